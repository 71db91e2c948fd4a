//! The XMPP client the load tool drives ejabberd with: a plain-TCP client stream, SASL PLAIN,
//! resource binding and stream management (XEP-0198), so that every send can wait for the
//! server's `<a h='N'/>` to cover it, as MQTT's sends wait for their PUBACK.
//!
//! Stanzas are written as strings; the incoming stream is read with `quick-xml` event by event
//! and [`Builder`] (pure: no socket, no clock) folds those events into top-level elements.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use base64::Engine;
use futures_util::future::BoxFuture;
use quick_xml::events::Event;
use tokio::{
    io::{AsyncBufRead, AsyncWriteExt, BufReader},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, oneshot},
};

/// The domain a spawned ejabberd serves, and the one benchmark users live on.
pub const DOMAIN: &str = "bench.localhost";
/// Its multi-user chat service (XEP-0045), where fan-out rooms live.
pub const MUC_DOMAIN: &str = "conference.bench.localhost";

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SM: &str = "urn:xmpp:sm:3";
const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// How long one step of logging in may take: thousands of logins share one server core.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Escapes text for element content and attribute values (both quote kinds, so either may
/// delimit an attribute).
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// A one-to-one chat message with `body` to a bare JID.
pub fn chat(to: &str, body: &str) -> String {
    format!(
        "<message type='chat' to='{}'><body>{}</body></message>",
        escape(to),
        escape(body)
    )
}

/// A message with `body` to every occupant of `room` (a bare room JID).
pub fn groupchat(room: &str, body: &str) -> String {
    format!(
        "<message type='groupchat' to='{}'><body>{}</body></message>",
        escape(room),
        escape(body)
    )
}

/// Joining `room` as `nick` without the room's history: only messages sent after the join
/// count, as a Tern group member's live pushes do.
pub fn join(room: &str, nick: &str) -> String {
    format!(
        "<presence to='{}/{}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>",
        escape(room),
        escape(nick)
    )
}

/// Accepts a new room's default configuration (an "instant room", XEP-0045 §10.1.2), which
/// unlocks it for others to join.
pub fn instant_room(room: &str, id: &str) -> String {
    format!(
        "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_OWNER}'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
        escape(room),
        escape(id)
    )
}

fn stream_header() -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
}

/// One element of the incoming stream with its children: enough of a tree for features,
/// results and message bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The local name (`features` for `stream:features`): the stanzas this client reads are
    /// told apart by name alone.
    pub name: String,
    /// Attributes as written (qualified names), values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// The element's own text, unescaped (a message body lives here).
    pub text: String,
}

impl Element {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first `<body/>` child.
    pub fn body(&self) -> Option<&str> {
        self.child("body").map(|b| b.text.as_str())
    }

    /// Whether this is a stanza in the sense of stream management: the elements `h` counts.
    pub fn is_stanza(&self) -> bool {
        matches!(self.name.as_str(), "message" | "presence" | "iq")
    }
}

/// What the incoming stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The server opened (or, after SASL, reopened) its stream.
    StreamStart,
    /// A complete top-level element.
    Element(Element),
    /// The server closed its stream.
    StreamEnd,
}

/// Folds `quick-xml` events of a stream into [`Frame`]s: children of the stream element are
/// built up and handed out once their end tag arrives.
#[derive(Debug, Default)]
pub struct Builder {
    /// The elements open below the stream element, outermost first.
    open: Vec<Element>,
}

impl Builder {
    /// Takes one event; returns a frame when the event completes one.
    pub fn push(&mut self, event: Event<'_>) -> anyhow::Result<Option<Frame>> {
        match event {
            Event::Start(e) => {
                let el = element(&e)?;
                if self.open.is_empty() && el.name == "stream" {
                    return Ok(Some(Frame::StreamStart));
                }
                self.open.push(el);
                Ok(None)
            }
            Event::Empty(e) => {
                let el = element(&e)?;
                Ok(self.close(el))
            }
            Event::End(e) => match self.open.pop() {
                Some(el) => Ok(self.close(el)),
                None if e.local_name().as_ref() == b"stream" => Ok(Some(Frame::StreamEnd)),
                None => bail!(
                    "an end tag </{}> without its start",
                    String::from_utf8_lossy(e.name().as_ref())
                ),
            },
            Event::Text(t) => {
                // Whitespace between stanzas (keepalives) belongs to no element.
                if let Some(el) = self.open.last_mut() {
                    el.text
                        .push_str(&t.decode().context("text that is not UTF-8")?);
                }
                Ok(None)
            }
            Event::CData(t) => {
                if let Some(el) = self.open.last_mut() {
                    el.text
                        .push_str(&t.decode().context("CDATA that is not UTF-8")?);
                }
                Ok(None)
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref()? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().context("an entity name that is not UTF-8")?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .with_context(|| format!("an unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                if let Some(el) = self.open.last_mut() {
                    el.text.push_str(&c);
                }
                Ok(None)
            }
            Event::Eof => Ok(Some(Frame::StreamEnd)),
            // The XML declaration, comments, processing instructions: nothing to keep.
            _ => Ok(None),
        }
    }

    /// Attaches a finished element to its parent, or hands it out when it is top-level.
    fn close(&mut self, el: Element) -> Option<Frame> {
        match self.open.last_mut() {
            Some(parent) => {
                parent.children.push(el);
                None
            }
            None => Some(Frame::Element(el)),
        }
    }
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> anyhow::Result<Element> {
    let name = std::str::from_utf8(e.local_name().as_ref())
        .context("an element name that is not UTF-8")?
        .to_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.context("a malformed attribute")?;
        let key = std::str::from_utf8(a.key.as_ref())
            .context("an attribute name that is not UTF-8")?
            .to_owned();
        let value = a
            .unescape_value()
            .context("an attribute value")?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// The incoming half of a stream: reads frames one at a time, however the bytes arrive.
struct Incoming<R> {
    reader: quick_xml::Reader<R>,
    builder: Builder,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> Incoming<R> {
    fn new(read: R) -> Self {
        Self {
            reader: quick_xml::Reader::from_reader(read),
            builder: Builder::default(),
            buf: Vec::with_capacity(4096),
        }
    }

    /// Starts a fresh parser over the same bytes, for the stream the server opens after SASL
    /// (its second XML declaration and `<stream:stream>` begin a new document).
    fn restart(self) -> Self {
        Self::new(self.reader.into_inner())
    }

    async fn next(&mut self) -> anyhow::Result<Frame> {
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into_async(&mut self.buf)
                .await
                .context("reading the XMPP stream")?;
            if let Some(frame) = self.builder.push(event)? {
                return Ok(frame);
            }
        }
    }

    /// The next top-level element, failing on a stream error or the end of the stream.
    async fn element(&mut self) -> anyhow::Result<Element> {
        loop {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.next())
                .await
                .context("the server did not answer")??
            {
                Frame::StreamStart => continue,
                Frame::StreamEnd => bail!("the server closed the stream"),
                Frame::Element(el) if el.name == "error" => {
                    let what = el.children.first().map(|c| c.name.as_str()).unwrap_or("?");
                    bail!("stream error: {what}")
                }
                Frame::Element(el) => return Ok(el),
            }
        }
    }
}

/// What the writer task sends.
enum Out {
    /// A stanza (counted by the server's `h`), followed by an ack request once the queue is
    /// empty.
    Stanza(String),
    /// A stream-management element (not counted).
    Nonza(String),
}

/// The sending side's stream-management count and the sends waiting for it.
#[derive(Debug, Default)]
struct Acks {
    /// Stanzas written since `<enable/>`: the `h` the server reports once it has handled all.
    sent: u32,
    /// Sends waiting for an `h` that reaches their number, in sending order.
    waiting: VecDeque<(u32, oneshot::Sender<()>)>,
    /// The stream failed: later sends fail at once.
    closed: bool,
}

impl Acks {
    /// Resolves every send that `h` covers.
    fn ack(&mut self, h: u32) {
        while let Some((n, _)) = self.waiting.front() {
            // Serial-number comparison, so counts that wrap past 2^32 still order.
            if h.wrapping_sub(*n) as i32 >= 0 {
                if let Some((_, tx)) = self.waiting.pop_front() {
                    let _ = tx.send(());
                }
            } else {
                break;
            }
        }
    }

    fn close(&mut self) {
        self.closed = true;
        // Dropping the waiters fails their sends.
        self.waiting.clear();
    }
}

/// A logged-in client stream with stream management enabled. Cloning shares the stream.
#[derive(Debug, Clone)]
pub struct Session {
    out: mpsc::UnboundedSender<Out>,
    acks: Arc<Mutex<Acks>>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Out::Stanza(_) => "Out::Stanza",
            Out::Nonza(_) => "Out::Nonza",
        })
    }
}

impl Session {
    /// Writes a stanza now (in call order with every other one); the future says whether the
    /// server's `<a h/>` covered it.
    pub fn send_acked(&self, stanza: String) -> BoxFuture<'static, bool> {
        let (tx, rx) = oneshot::channel();
        {
            // The count and the queue are taken under one lock, so numbers follow write order.
            let mut acks = self.acks.lock().unwrap();
            if acks.closed || self.out.send(Out::Stanza(stanza)).is_err() {
                return Box::pin(async { false });
            }
            acks.sent = acks.sent.wrapping_add(1);
            let n = acks.sent;
            acks.waiting.push_back((n, tx));
        }
        Box::pin(async move { rx.await.is_ok() })
    }

    /// Writes a stanza without waiting for its ack (it still counts towards `h`).
    pub fn send(&self, stanza: String) -> anyhow::Result<()> {
        let mut acks = self.acks.lock().unwrap();
        if acks.closed || self.out.send(Out::Stanza(stanza)).is_err() {
            bail!("the XMPP stream is closed");
        }
        acks.sent = acks.sent.wrapping_add(1);
        Ok(())
    }
}

/// Logs `user` in at `addr` with `password` and binds `resource`; returns the session and the
/// stanzas the server sends from then on (messages, presences, iq), which the caller reads or
/// drops.
pub async fn connect(
    addr: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<(Session, mpsc::UnboundedReceiver<Element>)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let incoming = Incoming::new(BufReader::with_capacity(16 * 1024, read));
    login(incoming, &mut write, user, password, resource)
        .await
        .with_context(|| format!("logging {user} in over XMPP"))
        .map(|incoming| start(incoming, write))?
}

/// The client's half of a socket, buffered for the parser.
type SocketReader = BufReader<OwnedReadHalf>;

async fn login(
    mut incoming: Incoming<SocketReader>,
    write: &mut OwnedWriteHalf,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<Incoming<SocketReader>> {
    write.write_all(stream_header().as_bytes()).await?;
    let features = incoming.element().await?;
    let plain = features.child("mechanisms").is_some_and(|m| {
        m.children
            .iter()
            .any(|c| c.name == "mechanism" && c.text == "PLAIN")
    });
    if !plain {
        bail!("the server does not offer SASL PLAIN without TLS (starttls_required: false?)");
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    write
        .write_all(format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>").as_bytes())
        .await?;
    let answer = incoming.element().await?;
    if answer.name != "success" {
        let why = answer
            .children
            .first()
            .map(|c| c.name.as_str())
            .unwrap_or("?");
        bail!("authentication failed: {} ({why})", answer.name);
    }
    // The stream restarts after SASL: a new header each way.
    let mut fresh = incoming.restart();
    write.write_all(stream_header().as_bytes()).await?;
    let features = fresh.element().await?;
    if features.child("bind").is_none() {
        bail!("the server offers no resource binding");
    }
    if !features
        .children
        .iter()
        .any(|c| c.name == "sm" && c.attr("xmlns") == Some(NS_SM))
    {
        bail!("the server offers no stream management (mod_stream_mgmt)");
    }
    write
        .write_all(
            format!(
                "<iq type='set' id='bind'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
                escape(resource)
            )
            .as_bytes(),
        )
        .await?;
    let bound = fresh.element().await?;
    match bound.child("bind").and_then(|b| b.child("jid")) {
        // Messages are addressed to `user@DOMAIN`: a server that hosts another domain would
        // route them elsewhere.
        Some(jid) if jid.text.starts_with(&format!("{user}@{DOMAIN}/")) => {}
        Some(jid) => bail!("the server bound {} (expected {user}@{DOMAIN})", jid.text),
        None => bail!("binding a resource failed"),
    }
    // RFC 6121 sessions are optional on ejabberd (and gone from RFC 6120); nothing to do.
    write
        .write_all(format!("<enable xmlns='{NS_SM}'/>").as_bytes())
        .await?;
    let enabled = fresh.element().await?;
    if enabled.name != "enabled" {
        bail!("enabling stream management failed: {}", enabled.name);
    }
    Ok(fresh)
}

/// Starts the stream's reader and writer tasks.
fn start(
    mut incoming: Incoming<SocketReader>,
    mut write: OwnedWriteHalf,
) -> anyhow::Result<(Session, mpsc::UnboundedReceiver<Element>)> {
    let (out, mut queue) = mpsc::unbounded_channel::<Out>();
    let acks: Arc<Mutex<Acks>> = Arc::default();
    let (events_tx, events) = mpsc::unbounded_channel();

    // The writer: everything queued goes out in one write, and a batch that holds stanzas ends
    // with one ack request, so a busy sender asks once per batch rather than once per message.
    let writer_acks = acks.clone();
    tokio::spawn(async move {
        let mut batch = String::new();
        while let Some(first) = queue.recv().await {
            batch.clear();
            let mut stanzas = false;
            let mut next = Some(first);
            while let Some(item) = next {
                match item {
                    Out::Stanza(s) => {
                        stanzas = true;
                        batch.push_str(&s);
                    }
                    Out::Nonza(s) => batch.push_str(&s),
                }
                next = if batch.len() < 64 * 1024 {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
            if stanzas {
                batch.push_str("<r xmlns='urn:xmpp:sm:3'/>");
            }
            if write.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        writer_acks.lock().unwrap().close();
    });

    // The reader: acks resolve sends, ack requests are answered with the count of stanzas
    // received, and stanzas go to the caller.
    let reader_acks = acks.clone();
    let answer = out.clone();
    tokio::spawn(async move {
        let mut received: u32 = 0;
        while let Ok(frame) = incoming.next().await {
            let el = match frame {
                Frame::Element(el) => el,
                Frame::StreamStart => continue,
                Frame::StreamEnd => break,
            };
            match el.name.as_str() {
                "a" => {
                    if let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) {
                        reader_acks.lock().unwrap().ack(h);
                    }
                }
                "r" => {
                    let _ = answer.send(Out::Nonza(format!("<a xmlns='{NS_SM}' h='{received}'/>")));
                }
                "error" => break,
                _ if el.is_stanza() => {
                    received = received.wrapping_add(1);
                    let _ = events_tx.send(el);
                }
                _ => {}
            }
        }
        reader_acks.lock().unwrap().close();
    });

    Ok((Session { out, acks }, events))
}

/// Joins `room` as `nick` and waits for the room's presence for this occupant (status 110);
/// other stanzas that arrive meanwhile are dropped (no benchmark message is sent before every
/// member has joined). The first occupant creates the room and accepts its configuration.
pub async fn join_room(
    session: &Session,
    events: &mut mpsc::UnboundedReceiver<Element>,
    room: &str,
    nick: &str,
) -> anyhow::Result<()> {
    session.send(join(room, nick))?;
    let wait = async {
        loop {
            let el = events
                .recv()
                .await
                .context("the stream closed while joining")?;
            let from_me = el.attr("from") == Some(&format!("{room}/{nick}"));
            if el.name != "presence" || !from_me {
                continue;
            }
            if el.attr("type") == Some("error") {
                bail!("joining {room} was refused");
            }
            let x = el.child("x");
            let status = |code: &str| {
                x.is_some_and(|x| {
                    x.children
                        .iter()
                        .any(|c| c.name == "status" && c.attr("code") == Some(code))
                })
            };
            if status("110") {
                return Ok(status("201"));
            }
        }
    };
    let created = tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
        .await
        .with_context(|| format!("joining {room}"))??;
    if created {
        session.send(instant_room(room, "create"))?;
        let wait = async {
            loop {
                let el = events.recv().await.context("the stream closed")?;
                if el.name == "iq" && el.attr("id") == Some("create") {
                    if el.attr("type") == Some("result") {
                        return Ok(());
                    }
                    bail!("configuring {room} was refused");
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .with_context(|| format!("configuring {room}"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Vec<Frame> {
        let mut reader = quick_xml::Reader::from_str(input);
        let mut b = Builder::default();
        let mut out = Vec::new();
        loop {
            // The end of a test's input is not the server closing the stream.
            let event = reader.read_event().unwrap();
            if matches!(event, Event::Eof) {
                return out;
            }
            out.extend(b.push(event).unwrap());
        }
    }

    #[test]
    fn a_stream_yields_its_start_then_each_top_level_element() {
        let got = frames(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'>\
             <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features> \
             <a xmlns='urn:xmpp:sm:3' h='7'/></stream:stream>",
        );
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Frame::StreamStart);
        let Frame::Element(features) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(features.name, "features");
        assert!(features.child("bind").is_some());
        let Frame::Element(a) = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!((a.name.as_str(), a.attr("h")), ("a", Some("7")));
        assert_eq!(got[3], Frame::StreamEnd);
    }

    #[test]
    fn bodies_and_attributes_are_unescaped() {
        let got = frames(
            "<stream:stream xmlns:stream='s'><message from='a&amp;b@x' type='chat'>\
             <body>1:2 &lt;&amp;&gt; &#x41;&#66; &quot;q&apos;<![CDATA[<raw>]]></body></message>",
        );
        let Frame::Element(m) = &got[1] else {
            panic!("{got:?}")
        };
        assert!(m.is_stanza());
        assert_eq!(m.attr("from"), Some("a&b@x"));
        assert_eq!(m.body(), Some("1:2 <&> AB \"q'<raw>"));
    }

    #[tokio::test]
    async fn a_stanza_split_across_reads_is_built_once_complete() {
        // The socket hands bytes over as they arrive, cut anywhere: mid-tag, mid-entity.
        let (mut server, client) = tokio::io::duplex(64);
        let mut incoming = Incoming::new(BufReader::new(client));
        let chunks = [
            "<?xml version='1.0'?><stream:stream xmlns:stream='s' xmlns='jabber:client'>",
            "<message type='chat'><bo",
            "dy>1:2:3:4:&a",
            "mp;..</body></mess",
            "age><r xmlns='urn:xmpp:sm:3'/>",
        ];
        let writer = tokio::spawn(async move {
            for c in chunks {
                server.write_all(c.as_bytes()).await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        assert_eq!(incoming.next().await.unwrap(), Frame::StreamStart);
        let Frame::Element(m) = incoming.next().await.unwrap() else {
            panic!("expected the message")
        };
        assert_eq!(m.body(), Some("1:2:3:4:&.."));
        let Frame::Element(r) = incoming.next().await.unwrap() else {
            panic!("expected the ack request")
        };
        assert_eq!(r.name, "r");
        drop(writer.await.unwrap());
        assert_eq!(incoming.next().await.unwrap(), Frame::StreamEnd);
    }

    /// Reads from a fake server's socket until `needle` has arrived; returns what did.
    async fn expect(sock: &mut TcpStream, seen: &mut String, needle: &str) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the client closed before sending {needle}; sent {seen}"
            );
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        seen.clear();
    }

    #[tokio::test]
    async fn a_send_is_acked_once_the_servers_count_covers_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        let (h_tx, h_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = String::new();
            expect(&mut sock, &mut seen, "<stream:stream").await;
            let features = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                            <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
            sock.write_all(format!("{header}{features}").as_bytes())
                .await
                .unwrap();
            // "\0alice\0secret" in base64.
            expect(&mut sock, &mut seen, "AGFsaWNlAHNlY3JldA==</auth>").await;
            sock.write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
                .await
                .unwrap();
            expect(&mut sock, &mut seen, "<stream:stream").await;
            let features = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
                            <sm xmlns='urn:xmpp:sm:3'/></stream:features>";
            sock.write_all(format!("{header}{features}").as_bytes())
                .await
                .unwrap();
            expect(&mut sock, &mut seen, "<resource>bench</resource>").await;
            sock.write_all(
                b"<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                  <jid>alice@bench.localhost/bench</jid></bind></iq>",
            )
            .await
            .unwrap();
            expect(&mut sock, &mut seen, "<enable xmlns='urn:xmpp:sm:3'/>").await;
            sock.write_all(b"<enabled xmlns='urn:xmpp:sm:3'/>")
                .await
                .unwrap();
            // One stanza to the client, then an ack request: the answer counts it.
            sock.write_all(
                b"<message from='b@x'><body>hi</body></message><r xmlns='urn:xmpp:sm:3'/>",
            )
            .await
            .unwrap();
            expect(&mut sock, &mut seen, "<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
            // The client's message and its ack request; an ack that does not cover it first.
            expect(&mut sock, &mut seen, "<r xmlns='urn:xmpp:sm:3'/>").await;
            sock.write_all(b"<a xmlns='urn:xmpp:sm:3' h='0'/>")
                .await
                .unwrap();
            h_rx.await.unwrap();
            sock.write_all(b"<a xmlns='urn:xmpp:sm:3' h='1'/>")
                .await
                .unwrap();
            sock
        });
        let (session, mut events) = connect(&addr, "alice", "secret", "bench").await.unwrap();
        assert_eq!(events.recv().await.unwrap().body(), Some("hi"));
        let mut acked = session.send_acked(chat("b@bench.localhost", "1:0:0:0:"));
        // h='0' does not cover the first stanza: still waiting after it has surely arrived.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut acked)
                .await
                .is_err()
        );
        h_tx.send(()).unwrap();
        assert!(acked.await);
        // Once the server has gone, a send fails instead of waiting for an ack.
        drop(server.await.unwrap());
        let late = session.send_acked(chat("b@bench.localhost", "x"));
        assert!(
            !tokio::time::timeout(Duration::from_secs(10), late)
                .await
                .unwrap()
        );
    }

    #[test]
    fn written_stanzas_escape_what_xml_reserves() {
        assert_eq!(
            chat("b@x", "<a & 'b'>"),
            "<message type='chat' to='b@x'><body>&lt;a &amp; &apos;b&apos;&gt;</body></message>"
        );
        // What is written reads back as the same body.
        let body = "0:3:9:17:<&>'\"..";
        let got = frames(&format!("<s:stream xmlns:s='x'>{}", groupchat("r@c", body)));
        let Frame::Element(m) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(m.body(), Some(body));
        assert_eq!(m.attr("type"), Some("groupchat"));
    }

    #[test]
    fn an_ack_covers_every_send_up_to_its_count() {
        let mut acks = Acks::default();
        let mut rxs = Vec::new();
        for n in 1..=3 {
            let (tx, rx) = oneshot::channel();
            acks.waiting.push_back((n, tx));
            rxs.push(rx);
        }
        acks.ack(2);
        assert!(rxs[0].try_recv().is_ok());
        assert!(rxs[1].try_recv().is_ok());
        assert!(rxs[2].try_recv().is_err());
        assert_eq!(acks.waiting.len(), 1);
        acks.close();
        assert!(matches!(
            rxs[2].try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn ack_counts_order_across_the_wrap() {
        let mut acks = Acks::default();
        let (tx, mut rx) = oneshot::channel();
        acks.waiting.push_back((2, tx));
        acks.ack(u32::MAX);
        assert!(rx.try_recv().is_err());
        acks.ack(3);
        assert!(rx.try_recv().is_ok());
    }
}
