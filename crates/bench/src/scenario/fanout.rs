//! `fanout`: S senders into one group of M online members (or one MQTT topic with M
//! subscribers, or one XMPP multi-user chat room with M occupants), open loop at a fixed
//! message rate; every member must receive every message.
//!
//! Each receiving connection keeps its own exact accounting (one tracker per sender, one
//! latency histogram), so the hot path shares no lock; the results are merged at the end.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tern_client::{Connection, pb};
use tern_proto::ServerEvent;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    driver::{self, MqttSender, Sender, System, XmppSender},
    payload,
    report::Report,
    stats::{self, Latency},
    target::{self, Target},
    xmpp,
};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Members online (each one receiving connection).
    pub members: usize,
    /// Senders, all members of the group.
    pub senders: usize,
    /// Messages per second over all senders.
    pub rate: f64,
    /// How long senders send.
    pub duration: Duration,
    /// Body size in bytes.
    pub size: usize,
    /// How long to wait after sending for the last deliveries.
    pub drain: Duration,
}

/// What one receiving connection saw.
struct Seen {
    /// Per sender.
    trackers: Vec<stats::Tracker>,
    deliver: Histogram<u64>,
    last_ns: u64,
    garbled: u64,
    /// Notices that pushes were dropped for this connection.
    lagged: u64,
}

impl Seen {
    fn new(senders: usize) -> Self {
        Self {
            trackers: (0..senders).map(|_| stats::Tracker::default()).collect(),
            deliver: stats::small_histogram(),
            last_ns: 0,
            garbled: 0,
            lagged: 0,
        }
    }

    fn on_body(&mut self, body: &str, delivered: &AtomicU64) {
        let now = payload::now_ns();
        let Some((_, sender, seq, due_ns)) = payload::decode(body) else {
            self.garbled += 1;
            return;
        };
        let Some(t) = self.trackers.get_mut(sender as usize) else {
            self.garbled += 1;
            return;
        };
        let before = t.delivered;
        t.record(seq);
        if t.delivered > before {
            let _ = self
                .deliver
                .record((now.saturating_sub(due_ns) / 1000).max(1));
            self.last_ns = now;
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A connected group (or topic): senders and receiving tasks.
struct Fan {
    senders: Vec<Arc<Sender>>,
    receivers: Vec<JoinHandle<Seen>>,
    delivered: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    /// Keeps Tern connections open.
    _conns: Vec<Connection>,
}

fn text_body(m: &pb::Message) -> Option<&str> {
    match m.content.as_ref()?.body.as_ref()? {
        pb::content::Body::Text(t) => Some(&t.text),
        _ => None,
    }
}

async fn connect_tern(addr: &str, p: &Params) -> anyhow::Result<Fan> {
    let tag = driver::run_tag();
    let members: Vec<String> = (0..p.members).map(|i| format!("f{tag}m{i}")).collect();
    driver::register_all(addr, members.clone()).await?;
    // The first member creates the group and adds the rest, a thousand at a time.
    let (owner, _events, _) = driver::login(addr, &members[0], "bench-owner", None).await?;
    let mut chunks = members[1..].chunks(1000);
    let first = chunks.next().unwrap_or_default();
    let group = owner
        .request(pb::GroupCreateRequest {
            name: format!("fanout {tag}"),
            members: first.to_vec(),
            ..Default::default()
        })
        .await
        .context("creating the group")?
        .group
        .context("GROUP_CREATE answered without a group")?
        .group_id;
    for chunk in chunks {
        owner
            .request(pb::GroupUpdateRequest {
                group_id: group,
                change: Some(pb::group_update_request::Change::AddMembers(
                    pb::StringList {
                        values: chunk.to_vec(),
                    },
                )),
            })
            .await
            .context("adding members")?;
    }
    owner.close();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let logged_in: Vec<_> = stream::iter(members.clone())
        .map(|u| async move { driver::login(addr, &u, "bench", None).await })
        .buffered(64)
        .collect()
        .await;
    let mut conns = Vec::with_capacity(p.members);
    let mut receivers = Vec::with_capacity(p.members);
    for r in logged_in {
        let (conn, mut events, _) = r?;
        conns.push(conn);
        let (delivered, mut stopped) = (delivered.clone(), stopped.clone());
        let senders = p.senders;
        receivers.push(tokio::spawn(async move {
            let mut seen = Seen::new(senders);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return seen,
                    event = events.recv() => match event {
                        None => return seen,
                        Some(ServerEvent::Push(push)) => {
                            let message = push.group_message.or(push.entry.and_then(|e| e.event.map(|pb::inbox_entry::Event::Message(m)| m)));
                            if let Some(body) = message.as_ref().and_then(text_body) {
                                seen.on_body(body, &delivered);
                            }
                        }
                        Some(ServerEvent::SyncNotify(_)) => seen.lagged += 1,
                        Some(_) => {}
                    }
                }
            }
        }));
    }
    let senders: Vec<Arc<Sender>> = stream::iter(members[..p.senders.max(1)].to_vec())
        .map(|u| async move {
            driver::login(addr, &u, "bench-send", None)
                .await
                .map(|(c, _, _)| {
                    Arc::new(Sender::Tern(driver::TernSender::new(
                        c,
                        pb::send_request::Target::GroupId(group),
                        (&u, "bench-send"),
                        &[addr.to_owned()],
                        0,
                    )))
                })
        })
        .buffered(64)
        .try_collect()
        .await?;
    Ok(Fan {
        senders,
        receivers,
        delivered,
        stop,
        _conns: conns,
    })
}

async fn connect_mqtt(addr: &str, p: &Params) -> anyhow::Result<Fan> {
    let tag = driver::run_tag();
    let (host, port) = addr
        .rsplit_once(':')
        .context("an MQTT address is HOST:PORT")?;
    let port: u16 = port.parse()?;
    let topic = format!("fan/{tag}");
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut receivers = Vec::with_capacity(p.members);
    for i in 0..p.members {
        // Subscribers publish nothing and read small publishes: the client preallocates its
        // outgoing window, so a small one (and small buffers) keeps ten thousand subscribers
        // in a few hundred MiB instead of tens of GiB.
        let mut options = driver::mqtt_options(&format!("f{tag}r{i}"), host, port);
        options.set_max_packet_size(64 * 1024, 64 * 1024);
        options.set_inflight(16);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client.subscribe(&topic, QoS::AtLeastOnce).await?;
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (delivered, mut stopped) = (delivered.clone(), stopped.clone());
        let senders = p.senders;
        receivers.push(tokio::spawn(async move {
            let _client = client;
            let mut ready_tx = Some(ready_tx);
            let mut seen = Seen::new(senders);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return seen,
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(m))) => match std::str::from_utf8(&m.payload) {
                            Ok(body) => seen.on_body(body, &delivered),
                            Err(_) => seen.garbled += 1,
                        },
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("waiting for SUBACK")?
            .context("subscriber stopped")?;
    }
    let mut senders = Vec::with_capacity(p.senders);
    for s in 0..p.senders.max(1) {
        let sender: MqttSender =
            driver::mqtt_publisher(host, port, &format!("f{tag}s{s}"), &topic, u16::MAX).await?;
        senders.push(Arc::new(Sender::Mqtt(sender)));
    }
    Ok(Fan {
        senders,
        receivers,
        delivered,
        stop,
        _conns: Vec::new(),
    })
}

/// Every member joins one room (the first creates it); senders are members `0..S`, each
/// sending from its receiving stream, so its own copy (the room's echo) is its delivery, as a
/// Tern sender's other device receives its own group messages.
async fn connect_xmpp(target: &Target, p: &Params) -> anyhow::Result<Fan> {
    let addr = target.addr.as_str();
    let tag = driver::run_tag();
    let members: Vec<String> = (0..p.members).map(|i| format!("f{tag}m{i}")).collect();
    target.create_xmpp_users(&members)?;
    let room = format!("fan{tag}@{}", xmpp::MUC_DOMAIN);
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let join = |(i, u): (usize, String)| {
        let room = room.clone();
        async move {
            let (session, mut events) =
                xmpp::connect(addr, &u, &driver::bench_password(&u), "bench").await?;
            xmpp::join_room(&session, &mut events, &room, &format!("m{i}")).await?;
            anyhow::Ok((session, events))
        }
    };
    // The first member creates and configures the room before anyone else joins.
    let mut joined = vec![join((0, members[0].clone())).await?];
    let rest: Vec<_> = stream::iter(members.iter().cloned().enumerate().skip(1))
        .map(join)
        .buffered(64)
        .collect()
        .await;
    for r in rest {
        joined.push(r?);
    }
    let mut receivers = Vec::with_capacity(p.members);
    let mut senders = Vec::with_capacity(p.senders);
    for (i, (session, mut events)) in joined.into_iter().enumerate() {
        if i < p.senders.max(1) {
            senders.push(Arc::new(Sender::Xmpp(XmppSender {
                session: session.clone(),
                to: room.clone(),
                groupchat: true,
            })));
        }
        let (delivered, mut stopped) = (delivered.clone(), stopped.clone());
        let senders = p.senders;
        receivers.push(tokio::spawn(async move {
            let _session = session;
            let mut seen = Seen::new(senders);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return seen,
                    el = events.recv() => match el {
                        None => return seen,
                        Some(el) if el.name == "message" && el.attr("type") == Some("groupchat") => {
                            // The room's subject on join has no body.
                            if let Some(body) = el.body() {
                                seen.on_body(body, &delivered);
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
        }));
    }
    Ok(Fan {
        senders,
        receivers,
        delivered,
        stop,
        _conns: Vec::new(),
    })
}

/// Connects, sends at the rate for the duration, and reports deliveries, latency, exact
/// loss/duplication/order per member, and the server's CPU per delivery.
pub async fn run(
    system: System,
    target: &Target,
    p: &Params,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let fan = match system {
        System::Tern => connect_tern(&target.addr, p).await?,
        System::Mqtt => connect_mqtt(&target.addr, p).await?,
        System::Xmpp => connect_xmpp(target, p).await?,
    };
    let server_before = target.sample();
    let self_before = target::sample_self();
    let schedule = super::Schedule::from_now(0, p.rate, p.duration, p.size);
    let start_ns = schedule.start_ns;
    let expected = (p.rate * p.duration.as_secs_f64()).round() as u64 * p.members as u64;
    let bar = super::progress(expected, quiet, &format!("{}×{:.0}/s", p.members, p.rate));
    let (pacers, fired) = super::pace(&fan.senders, schedule);
    let super::Fired {
        sent,
        acked,
        failed,
        acked_sets,
        ..
    } = fired;
    let ticker = {
        let (bar, delivered) = (bar.clone(), fan.delivered.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(delivered.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for pacer in pacers {
        let _ = pacer.await;
    }
    let drain_until = Instant::now() + p.drain;
    loop {
        let (s, a, f) = (
            sent.load(Ordering::Relaxed),
            acked.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        let d = fan.delivered.load(Ordering::Relaxed);
        if (a + f == s && d >= a * p.members as u64) || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ticker.abort();
    bar.finish_and_clear();
    let server_after = target.sample();
    let self_after = target::sample_self();
    let _ = fan.stop.send(true);

    let acked_sets: Vec<Vec<bool>> = acked_sets
        .iter()
        .map(|s| s.lock().unwrap().clone())
        .collect();
    let mut deliver_all = stats::small_histogram();
    let (mut delivered, mut lost, mut duplicated, mut out_of_order) = (0u64, 0u64, 0u64, 0u64);
    let (mut garbled, mut lagged, mut last_ns) = (0u64, 0u64, start_ns);
    for r in fan.receivers {
        let seen = r.await.context("a receiver failed")?;
        let _ = deliver_all.add(&seen.deliver);
        last_ns = last_ns.max(seen.last_ns);
        garbled += seen.garbled;
        lagged += seen.lagged;
        for (k, t) in seen.trackers.iter().enumerate() {
            delivered += t.delivered;
            duplicated += t.duplicated;
            out_of_order += t.out_of_order;
            lost += acked_sets[k]
                .iter()
                .enumerate()
                .filter(|(j, a)| **a && !t.has(*j as u64))
                .count() as u64;
        }
    }
    let window = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(p.duration.as_secs_f64());
    let (sent, acked, refused) = (
        sent.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    report.figure("offered rate", p.rate, "msg/s");
    report.figure("messages acked", acked as f64, "");
    report.figure("deliveries", delivered as f64, "");
    report.figure("deliveries per second", delivered as f64 / window, "/s");
    if let (Some(b), Some(a)) = (server_before, server_after) {
        let cpu = a.cpu_us - b.cpu_us;
        report.figure(
            "server CPU per delivery",
            cpu / delivered.max(1) as f64,
            "µs",
        );
        report.figure("server CPU", cpu / 1e6 / window, "cores");
        report.figure("server RSS", a.rss_kib as f64 / 1024.0, "MiB");
    }
    report.figure(
        "load tool CPU per delivery",
        (self_after.cpu_us - self_before.cpu_us) / delivered.max(1) as f64,
        "µs",
    );
    report.figure("lag notices", lagged as f64, "");
    report
        .latencies
        .push(("send→deliver".into(), Latency::of(&deliver_all)));
    report.violation("lost (acked, never delivered)", lost);
    report.violation("duplicated", duplicated);
    report.violation("out of order", out_of_order);
    report.violation(
        "failed sends",
        refused + sent.saturating_sub(acked + refused),
    );
    report.violation("garbled bodies", garbled);
    Ok(())
}
