// The Tern web client: one page, no framework, on the JavaScript SDK (./sdk, built from
// sdk/js). State lives in a few maps; every change re-renders the part of the page it touches.
// Every text a user wrote is put in the page with textContent, never parsed as HTML.

import {
  Client,
  IndexedDbCursorStore,
  MemoryCursorStore,
  MessageType,
  TernError,
  newClientMsgId,
  toNumber,
} from "./sdk/index.js";

const $ = (id) => document.getElementById(id);
const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const PAGE = 30;
const TYPING_SHOW_MS = 4000;
const TYPING_SEND_EVERY_MS = 2500;

/** The logged-in session of this tab, or undefined. */
let client;
let me = "";
/** conversation id → the list's conversation (server shape). */
const conversations = new Map();
let listVersion = 0;
/** conversation id → { bySeq: Map<seq, view>, pending: view[], oldest, hasMore, loaded } */
const views = new Map();
/** The open conversation: { id, peer?, groupId? }. */
let open;
let friends = [];
let requests = [];
const blocked = new Set();
/** user id → online */
const presence = new Map();
/** group id → name */
const groupNames = new Map();
let editing;
/** How many incoming friend requests the list showed: the section opens when one is new. */
let incomingSeen = 0;
let typingTimer;
let lastTypingSent = 0;

// ---- small helpers ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (typeof v === "boolean" && (k.startsWith("data-") || k.startsWith("aria-"))) {
      // These say "true" or "false"; a bare attribute would read as the empty string.
      node.setAttribute(k, String(v));
      continue;
    }
    if (v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function directId(a, b) {
  // The server's rule (core's ConversationId::direct): the two ids in byte order.
  const enc = new TextEncoder();
  const [x, y] = [enc.encode(a), enc.encode(b)];
  let lo = a;
  let hi = b;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (i >= x.length) break;
    if (i >= y.length || x[i] > y[i]) {
      lo = b;
      hi = a;
      break;
    }
    if (x[i] < y[i]) break;
  }
  return `p:${lo}:${hi}`;
}

function describeError(e) {
  if (e instanceof TernError) return e.message;
  return e?.message ?? String(e);
}

function summary(content) {
  if (!content) return "Message recalled";
  if (content.text) return content.text.text;
  if (content.image) return "[Picture]";
  if (content.file) return `[File] ${content.file.name ?? ""}`.trim();
  if (content.groupEvent) return groupEventText(content.groupEvent);
  if (content.recall) return "A message was recalled";
  if (content.edit) return "A message was edited";
  if (content.custom) return `[${content.custom.kind}]`;
  return "[Message]";
}

function groupEventText(ev) {
  const who = (ev.members ?? []).join(", ");
  switch (ev.kind) {
    case "GROUP_EVENT_KIND_CREATED":
      return `Group "${ev.name ?? ""}" created`;
    case "GROUP_EVENT_KIND_MEMBERS_ADDED":
      return `${who} joined`;
    case "GROUP_EVENT_KIND_MEMBERS_REMOVED":
      return `${who} removed`;
    case "GROUP_EVENT_KIND_MEMBER_LEFT":
      return `${who} left`;
    case "GROUP_EVENT_KIND_RENAMED":
      return `Renamed to "${ev.name ?? ""}"`;
    default:
      return (ev.kind ?? "group event").replace(/^GROUP_EVENT_KIND_/, "").toLowerCase().replace(/_/g, " ");
  }
}

/** Events that change other messages or state, not lines of the conversation. */
function isNotice(content) {
  return Boolean(
    content &&
      (content.recall ||
        content.edit ||
        content.readMark ||
        content.conversationFlags ||
        content.friendEvent ||
        content.blockChanged ||
        content.profileChanged),
  );
}

function conversationOf(message) {
  return message.conversationId;
}

function viewOf(id) {
  let v = views.get(id);
  if (!v) {
    // `read`: the seq up to which history pages were read, so a catch-up after a reconnect
    // starts there and not after a pushed message that may have overtaken missed ones.
    v = { bySeq: new Map(), pending: [], oldest: 0, hasMore: true, loaded: false, read: 0 };
    views.set(id, v);
  }
  return v;
}

function fromMessage(m) {
  return {
    seq: toNumber(m.seq),
    messageId: String(m.messageId ?? ""),
    clientMsgId: m.clientMsgId ?? "",
    sender: m.sender,
    content: m.content,
    recalled: m.recalled === true,
    edited: toNumber(m.editedAtMs) > 0,
    time: toNumber(m.serverTimeMs),
    state: "sent",
  };
}

// ---- session ----

/** This tab's device id. A duplicated tab starts with a copy of the original's
 * sessionStorage, device id and token included; as one device the two would replace each
 * other's connection. So a tab asks the others whether its id is taken, and if it is, becomes
 * a new device that logs in afresh. */
async function claimDevice() {
  let id = sessionStorage.getItem("tern.device");
  if (id && typeof BroadcastChannel !== "undefined") {
    const probe = new BroadcastChannel("tern.devices");
    const taken = await new Promise((resolve) => {
      probe.onmessage = (e) => e.data?.taken === id && resolve(true);
      probe.postMessage({ who: id });
      setTimeout(() => resolve(false), 150);
    });
    probe.close();
    if (taken) {
      id = undefined;
      sessionStorage.removeItem("tern.session");
    }
  }
  if (!id) {
    id = `web-${newClientMsgId()}`;
    sessionStorage.setItem("tern.device", id);
  }
  if (typeof BroadcastChannel !== "undefined") {
    const mine = id;
    const answer = new BroadcastChannel("tern.devices");
    answer.onmessage = (e) => e.data?.who === mine && answer.postMessage({ taken: mine });
  }
  return id;
}

const device = claimDevice();

function cursorStore() {
  return typeof indexedDB === "undefined" ? new MemoryCursorStore() : new IndexedDbCursorStore();
}

async function start(userId, credential) {
  const options = {
    url: WS_URL,
    userId,
    deviceId: await device,
    platform: "PLATFORM_WEB",
    // A person is waiting: after an outage, try again at least every few seconds.
    reconnectMaxMs: 5000,
    cursorStore: cursorStore(),
    ...credential,
  };
  const c = await Client.connect(options, (c) => {
    c.on("message", (m) => onMessage(m));
    c.on("groupMessage", (m) => onMessage(m));
    c.on("presence", (p) => onPresence(p));
    c.on("typing", (t) => onTyping(t));
    c.on("state", (s) => onState(s));
    c.on("kicked", (k) => onKicked(k));
  });
  client = c;
  me = userId;
  sessionStorage.setItem("tern.session", JSON.stringify({ userId, token: c.deviceToken }));
  $("me").textContent = me;
  $("auth-screen").hidden = true;
  $("app").hidden = false;
  onState(c.connectionState);
  await Promise.all([refreshConversations(true), refreshFriends(), refreshBlocks()]);
}

async function onAuth(event, register) {
  event.preventDefault();
  const userId = $("auth-user").value.trim();
  const password = $("auth-password").value;
  const error = $("auth-error");
  error.textContent = "";
  if (!userId || !password) {
    error.textContent = "Enter a user id and a password.";
    return;
  }
  for (const b of [$("auth-login"), $("auth-register")]) b.disabled = true;
  try {
    if (register) await Client.register(WS_URL, userId, password);
    await start(userId, { password });
    $("auth-password").value = "";
  } catch (e) {
    error.textContent = describeError(e);
  } finally {
    for (const b of [$("auth-login"), $("auth-register")]) b.disabled = false;
  }
}

function onState(state) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = { online: "online", reconnecting: "reconnecting…", closed: "offline" }[state];
  if (state === "online" && client) {
    // What changed while the connection was down: the list, and the open conversation's tail.
    // Views of closed conversations may have missed pushes (a group's messages come only by
    // push and history): they are dropped and read again when opened.
    for (const id of [...views.keys()]) if (id !== open?.id) views.delete(id);
    void refreshConversations();
    if (open) void loadNewer(open.id);
  }
}

function onKicked(kick) {
  sessionStorage.removeItem("tern.session");
  showLogin(kick?.message ? `Logged out: ${kick.message}` : "Logged out: another login replaced this one.");
}

function showLogin(message = "") {
  // Nothing of the previous user may show to the next one in this tab.
  client = undefined;
  me = "";
  conversations.clear();
  listVersion = 0;
  views.clear();
  open = undefined;
  editing = undefined;
  friends = [];
  requests = [];
  blocked.clear();
  presence.clear();
  groupNames.clear();
  incomingSeen = 0;
  $("app").hidden = true;
  $("app").classList.remove("chatting");
  $("auth-screen").hidden = false;
  $("auth-error").textContent = message;
  $("chat").dataset.conversationId = "";
  $("composer").hidden = true;
  $("composer-text").value = "";
  $("typing").textContent = "";
  $("chat-error").textContent = "";
  setComposerMode();
  renderConversations();
  renderMessages();
  renderFriends();
  renderChatHeader();
  document.title = "Tern";
}

async function logout() {
  const c = client;
  sessionStorage.removeItem("tern.session");
  showLogin();
  if (c) await c.logout();
}

// ---- live events ----

function onMessage(m) {
  const content = m.content;
  if (content?.readMark) {
    // Our own mark (another device read) or the peer's read receipt: the list has both.
    scheduleListRefresh();
    return;
  }
  if (content?.conversationFlags || content?.friendEvent || content?.blockChanged) {
    scheduleListRefresh();
    if (content.friendEvent) void refreshFriends();
    if (content.blockChanged) void refreshBlocks();
    return;
  }
  if (content?.profileChanged) return;
  const id = conversationOf(m);
  const v = views.get(id);
  if ((content?.recall || content?.edit) && v) {
    amend(v, content);
  } else if (v) {
    addMessage(v, fromMessage(m));
  }
  const renamed = content?.groupEvent;
  if (renamed?.kind === "GROUP_EVENT_KIND_RENAMED" && id.startsWith("g:")) {
    groupNames.set(Number(id.slice(2)), renamed.name ?? "");
    renderChatHeader();
  }
  if (open?.id === id) {
    renderMessages();
    if (m.sender !== me && document.visibilityState === "visible") void markRead(id, true);
  }
  scheduleListRefresh();
}

/** Applies a recall or edit event to the message it is about, if the view has it. */
function amend(v, content) {
  if (content.recall) {
    const target = v.bySeq.get(toNumber(content.recall.seq));
    if (target) {
      target.recalled = true;
      target.content = undefined;
    }
  } else if (content.edit) {
    const target = v.bySeq.get(toNumber(content.edit.seq));
    if (target && !target.recalled) {
      target.content = content.edit.content;
      target.edited = true;
    }
  }
}

/** Whether an error says the same request may succeed later. */
function retryable(e) {
  return !(e instanceof TernError) || e.retryable;
}

function addMessage(v, view) {
  const seq = view.seq;
  if (view.clientMsgId && view.sender === me) {
    // This device's own send, come back through another path before its ack: one line, not two.
    const i = v.pending.findIndex((p) => p.clientMsgId === view.clientMsgId);
    if (i >= 0) v.pending.splice(i, 1);
  }
  const old = v.bySeq.get(seq);
  if (old) {
    // Seen already (from history or an earlier event): keep what the newer copy says, except
    // that a recall is final (a history page read before it may still show the message).
    const recalled = old.recalled || view.recalled;
    Object.assign(old, view, { state: "sent", recalled });
    if (recalled) old.content = undefined;
  } else {
    v.bySeq.set(seq, view);
  }
}

function onPresence(p) {
  presence.set(p.userId, p.online === true || (p.devices ?? []).length > 0);
  renderFriends();
  renderConversations();
  renderChatHeader();
}

function onTyping(t) {
  if (!open || open.id !== t.conversationId) return;
  const line = $("typing");
  line.textContent = `${t.fromUser} is typing…`;
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => (line.textContent = ""), TYPING_SHOW_MS);
}

// ---- the conversation list ----

let listTimer;
function scheduleListRefresh() {
  if (listTimer) return;
  listTimer = setTimeout(() => {
    listTimer = undefined;
    void refreshConversations();
  }, 50);
}

let listing = Promise.resolve();
function refreshConversations(full = false) {
  // One request at a time, so the versions follow each other.
  listing = listing.then(async () => {
    if (!client) return;
    try {
      const r = await client.conversations(full ? 0 : listVersion);
      if (r.full) conversations.clear();
      else {
        // A partial answer names every group of the caller: the others were left.
        const named = new Set(r.conversations.map((c) => c.conversationId));
        for (const [id, c] of conversations) if (c.groupId && !named.has(id)) conversations.delete(id);
      }
      for (const c of r.conversations) conversations.set(c.conversationId, c);
      listVersion = r.version;
      await nameGroups();
      renderConversations();
      renderMessages();
      renderChatHeader();
    } catch (e) {
      console.warn("conversation list", e);
    }
  });
  return listing;
}

async function nameGroups() {
  for (const c of conversations.values()) {
    const gid = toNumber(c.groupId);
    if (!gid || groupNames.has(gid)) continue;
    try {
      const r = await client.request(MessageType.GROUP_INFO, { groupId: String(gid) });
      groupNames.set(gid, r.group?.name ?? `Group ${gid}`);
    } catch {
      groupNames.set(gid, `Group ${gid}`);
    }
  }
}

function nameOf(c) {
  if (c.peer) return c.peer;
  const gid = toNumber(c.groupId);
  return groupNames.get(gid) ?? `Group ${gid}`;
}

function sortedConversations() {
  return [...conversations.values()].sort((a, b) => {
    if (Boolean(a.pinned) !== Boolean(b.pinned)) return a.pinned ? -1 : 1;
    return toNumber(b.lastMessage?.serverTimeMs) - toNumber(a.lastMessage?.serverTimeMs);
  });
}

function renderConversations() {
  const list = $("conversations");
  const kept = new Map();
  const items = sortedConversations().map((c) => {
    const active = open?.id === c.conversationId;
    const print = JSON.stringify([c, presence.get(c.peer), active, nameOf(c), me]);
    const known = conversationNodes.get(c.conversationId);
    const node = known?.print === print ? known.node : conversationNode(c);
    kept.set(c.conversationId, { print, node });
    return node;
  });
  conversationNodes = kept;
  reconcile(list, items);
  const total = sortedConversations().reduce((n, c) => n + (c.muted ? 0 : Number(c.unread ?? 0)), 0);
  document.title = total > 0 ? `(${total}) Tern` : "Tern";
}

/** The list's elements by conversation id, with what they were drawn from. */
let conversationNodes = new Map();

function conversationNode(c) {
  const unread = c.muted ? 0 : Number(c.unread ?? 0);
  const mutedUnread = c.muted ? Number(c.unread ?? 0) : 0;
  const badge = el("span", {
    class: c.muted ? "unread muted" : "unread",
    "data-count": unread || mutedUnread,
    "aria-label": `${unread || mutedUnread} unread`,
    text: String(unread || mutedUnread),
  });
  badge.hidden = unread + mutedUnread === 0;
  const dot = c.peer
    ? el("span", {
        class: "presence",
        role: "img",
        "data-online": presence.get(c.peer) === true,
        "aria-label": presence.get(c.peer) ? "online" : "offline",
      })
    : el("span", { class: "group-mark", "aria-hidden": "true", text: "#" });
  const last = c.lastMessage;
  const lastText = last ? (last.sender !== me && toNumber(c.groupId) ? `${last.sender}: ` : "") + summary(last.content) : "";
  const item = el(
    "li",
    {
      class: open?.id === c.conversationId ? "conversation active" : "conversation",
      "data-conversation-id": c.conversationId,
      "data-peer": c.peer || undefined,
      "data-group-id": toNumber(c.groupId) || undefined,
      "data-pinned": Boolean(c.pinned),
      "data-muted": Boolean(c.muted),
    },
    el(
      "button",
      {
        class: "open",
        type: "button",
        "aria-current": open?.id === c.conversationId ? "true" : undefined,
        onclick: () => openConversation(c.peer ? { peer: c.peer } : { groupId: toNumber(c.groupId) }),
      },
      dot,
      el(
        "span",
        { class: "conversation-text" },
        el("span", { class: "conversation-name", text: nameOf(c) }),
        el("span", { class: "last", text: lastText }),
      ),
      c.pinned ? el("span", { class: "flag", "aria-label": "pinned", text: "📌" }) : null,
      c.muted ? el("span", { class: "flag", "aria-label": "muted", text: "🔕" }) : null,
      badge,
    ),
  );
  return item;
}

// ---- a conversation ----

async function openConversation(target) {
  if (!client) return;
  const id = target.peer ? directId(me, target.peer) : `g:${target.groupId}`;
  open = { id, ...target };
  if (editing) {
    // An edit left unfinished is dropped with its text, never sent as a new message here.
    editing = undefined;
    $("composer-text").value = "";
  }
  $("chat").dataset.conversationId = id;
  $("chat-error").textContent = "";
  $("typing").textContent = "";
  $("composer").hidden = false;
  $("app").classList.add("chatting");
  setComposerMode();
  renderChatHeader();
  renderConversations();
  const v = viewOf(id);
  renderMessages(true);
  if (!v.loaded) await loadOlder(id, true);
  else await loadNewer(id);
  if (open?.id === id) {
    $("composer-text").focus();
    void markRead(id);
  }
}

/** Back to the list (a phone shows one pane): the conversation is no longer open, so what
 * arrives in it stays unread. */
function closeConversation() {
  open = undefined;
  editing = undefined;
  $("app").classList.remove("chatting");
  $("chat").dataset.conversationId = "";
  $("composer").hidden = true;
  $("composer-text").value = "";
  $("typing").textContent = "";
  setComposerMode();
  renderChatHeader();
  renderMessages();
  renderConversations();
}

function historyTarget(id) {
  return { conversationId: id };
}

async function loadOlder(id, first = false) {
  const v = viewOf(id);
  if (v.loadingOlder || (!first && !v.hasMore)) return;
  v.loadingOlder = true;
  try {
    const page = await client.history({
      ...historyTarget(id),
      anchorSeq: first ? 0 : v.oldest,
      direction: "DIRECTION_BACKWARD",
      limit: PAGE,
    });
    for (const m of page.messages) if (!isNotice(m.content)) addMessage(v, fromMessage(m));
    const seqs = page.messages.map((m) => toNumber(m.seq));
    if (seqs.length) v.oldest = Math.min(v.oldest || Infinity, ...seqs);
    if (first && seqs.length) v.read = Math.max(v.read, ...seqs);
    v.hasMore = page.hasMore;
    v.loaded = true;
  } catch (e) {
    if (open?.id === id && !(e?.name === "NOT_A_PARTICIPANT" && first)) {
      $("chat-error").textContent = describeError(e);
    }
    // A refusal ends paging; a lost connection or a rate limit is tried again on the next
    // scroll (or, for the first page, the next time the conversation opens).
    if (!retryable(e)) {
      v.loaded = true;
      v.hasMore = false;
    }
  } finally {
    v.loadingOlder = false;
  }
  if (open?.id === id) renderMessages(first ? true : "keep");
}

/** After a reconnect: whatever the open conversation got meanwhile (also what push missed). */
async function loadNewer(id) {
  const v = viewOf(id);
  try {
    for (;;) {
      const page = await client.history({
        ...historyTarget(id),
        anchorSeq: v.read,
        direction: "DIRECTION_FORWARD",
        limit: 100,
      });
      for (const m of page.messages) {
        // Recalls and edits made meanwhile change messages already on screen.
        if (m.content?.recall || m.content?.edit) amend(v, m.content);
        else if (!isNotice(m.content)) addMessage(v, fromMessage(m));
      }
      if (page.messages.length) v.read = toNumber(page.messages[page.messages.length - 1].seq);
      if (!page.hasMore) break;
    }
  } catch (e) {
    console.warn("history", e);
  }
  if (open?.id === id) renderMessages();
}

/** Marks the conversation read; `always` when a message just came (the list may not know it yet). */
async function markRead(id, always = false) {
  const c = conversations.get(id);
  if (!always && c && Number(c.unread ?? 0) === 0 && toNumber(c.readSeq) >= toNumber(c.maxSeq)) return;
  try {
    await client.markRead(id);
    if (c) {
      c.unread = 0;
      c.readSeq = c.maxSeq;
    }
    renderConversations();
  } catch (e) {
    console.warn("read", e);
  }
}

function renderChatHeader() {
  const title = $("chat-title");
  const dot = $("chat-presence");
  if (!open) {
    title.textContent = "Pick a conversation";
    for (const id of ["pin", "mute", "block"]) $(id).hidden = true;
    $("group-add-form").hidden = true;
    dot.hidden = true;
    return;
  }
  const c = conversations.get(open.id);
  title.textContent = open.peer ?? groupNames.get(open.groupId) ?? `Group ${open.groupId}`;
  dot.hidden = !open.peer;
  if (open.peer) {
    dot.dataset.online = String(presence.get(open.peer) === true);
    dot.setAttribute("aria-label", presence.get(open.peer) ? "online" : "offline");
  }
  const pin = $("pin");
  const mute = $("mute");
  pin.hidden = mute.hidden = !c;
  pin.textContent = c?.pinned ? "Unpin" : "Pin";
  pin.setAttribute("aria-pressed", String(Boolean(c?.pinned)));
  mute.textContent = c?.muted ? "Unmute" : "Mute";
  mute.setAttribute("aria-pressed", String(Boolean(c?.muted)));
  const block = $("block");
  block.hidden = !open.peer;
  block.textContent = open.peer && blocked.has(open.peer) ? "Unblock" : "Block";
  $("group-add-form").hidden = !open.groupId;
}

function stateOf(view, c) {
  if (view.state === "sending" || view.state === "failed") return view.state;
  if (view.sender === me && c?.peer && view.seq > 0 && toNumber(c.peerReadSeq) >= view.seq) return "read";
  return "sent";
}

function bodyOf(view) {
  if (view.recalled) return el("span", { class: "body", text: "Message recalled" });
  const content = view.content ?? {};
  if (content.image) {
    const img = el("img", {
      class: "thumbnail",
      alt: "Picture",
      width: content.image.thumbWidth || undefined,
      height: content.image.thumbHeight || undefined,
    });
    void loadPicture(img, content.image);
    return el("span", { class: "body" }, img);
  }
  if (content.file) {
    const a = el("a", { class: "file", href: "#", text: `📄 ${content.file.name || "file"} (${size(content.file.size)})` });
    a.addEventListener("click", (e) => {
      e.preventDefault();
      void downloadFile(content.file);
    });
    return el("span", { class: "body" }, a);
  }
  if (content.groupEvent) return el("span", { class: "body", text: groupEventText(content.groupEvent) });
  return el("span", { class: "body", text: summary(content) });
}

function size(n) {
  const v = toNumber(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(1)} MiB`;
}

/** Blob URLs of fetched pictures, by file id and edge, so a re-render does not fetch again. */
const pictures = new Map();

async function authorizedBlob(path) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${client.deviceToken}` } });
  if (!response.ok) throw new Error(`${response.status}`);
  return response.blob();
}

async function loadPicture(img, image) {
  if (!image.fileId) {
    if (image.url && /^https?:/.test(image.url)) img.alt = `Picture: ${image.url}`;
    return;
  }
  const key = `${image.fileId}?thumbnail=320`;
  try {
    let url = pictures.get(key);
    if (!url) {
      url = URL.createObjectURL(await authorizedBlob(`/v1/files/${encodeURIComponent(image.fileId)}?thumbnail=320`));
      pictures.set(key, url);
    }
    img.src = url;
  } catch {
    img.alt = "Picture (not available)";
  }
}

async function downloadFile(file) {
  try {
    const blob = await authorizedBlob(`/v1/files/${encodeURIComponent(file.fileId)}`);
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: file.name || "file" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    $("chat-error").textContent = `Download failed: ${describeError(e)}`;
  }
}

function renderMessages(scroll = false) {
  const list = $("messages");
  if (!open) {
    list.replaceChildren();
    return;
  }
  const v = viewOf(open.id);
  const c = conversations.get(open.id);
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const ordered = [...v.bySeq.values()].sort((a, b) => a.seq - b.seq).concat(v.pending);
  const kept = new Map();
  const items = ordered.map((view) => {
    const state = stateOf(view, c);
    // A message that did not change keeps its element: focus stays on its buttons, and a
    // screen reader hears only what is new in the log.
    const key = `${open.id}|${view.clientMsgId ? `${view.sender}/${view.clientMsgId}` : view.seq}`;
    const print = JSON.stringify([state, view.seq, view.messageId, view.recalled, view.edited, view.content, view.error, view.time]);
    const known = messageNodes.get(key);
    const node = known && known.view === view && known.print === print ? known.node : messageNode(view, state);
    kept.set(key, { view, print, node });
    return node;
  });
  messageNodes = kept;
  reconcile(list, items);
  if (scroll === true || (scroll !== "keep" && atBottom)) list.scrollTop = list.scrollHeight;
  else if (scroll === "keep") list.scrollTop = list.scrollHeight - fromBottom;
}

/** Elements of the open conversation's messages, by key, with what they were drawn from. */
let messageNodes = new Map();

/** Makes `parent`'s children exactly `nodes`, in order, moving as few as it can. */
function reconcile(parent, nodes) {
  let at = parent.firstChild;
  for (const node of nodes) {
    if (node === at) at = at.nextSibling;
    else parent.insertBefore(node, at);
  }
  while (at) {
    const next = at.nextSibling;
    at.remove();
    at = next;
  }
}

function messageNode(view, state) {
  const mine = view.sender === me;
  const event = Boolean(view.content?.groupEvent) || view.clientMsgId === "";
  const time = view.time ? new Date(view.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  const actions = [];
  if (mine && !view.recalled && !event && state !== "sending" && state !== "failed") {
    actions.push(el("button", { class: "recall", type: "button", onclick: () => recall(view), text: "Recall" }));
    if (view.content?.text) {
      actions.push(el("button", { class: "edit", type: "button", onclick: () => startEdit(view), text: "Edit" }));
    }
  }
  if (state === "failed") {
    actions.push(el("button", { class: "retry", type: "button", onclick: () => retry(view), text: "Retry" }));
  }
  const classes = ["message", mine ? "mine" : "theirs", event ? "event" : "", view.recalled ? "recalled" : ""];
  const stateLabel = mine && !event ? el("span", { class: "state", text: { sending: "sending…", sent: "sent", failed: "failed", read: "read" }[state] }) : null;
  return el(
    "li",
    {
      class: classes.filter(Boolean).join(" "),
      "data-seq": view.seq || "",
      "data-message-id": view.messageId,
      "data-client-msg-id": view.clientMsgId,
      "data-sender": view.sender,
      "data-mine": mine,
      "data-state": state,
    },
    !mine && !event && open.groupId ? el("span", { class: "sender", text: view.sender }) : null,
    bodyOf(view),
    el(
      "span",
      { class: "meta" },
      view.edited && !view.recalled ? el("span", { class: "edited", text: "edited" }) : null,
      time ? el("time", { text: time }) : null,
      stateLabel,
      view.error ? el("span", { class: "why", text: view.error }) : null,
      ...actions,
    ),
  );
}

function targetOf(o) {
  return o.peer ? { toUser: o.peer } : { groupId: o.groupId };
}

/** Sends `content` to conversation `o` (which may no longer be the open one by then). */
function send(o, content, clientMsgId = newClientMsgId(), existing) {
  const v = viewOf(o.id);
  const view =
    existing ??
    { seq: 0, messageId: "", clientMsgId, sender: me, content, recalled: false, edited: false, time: Date.now() };
  view.state = "sending";
  view.error = undefined;
  if (!existing) v.pending.push(view);
  if (open?.id === o.id) renderMessages(true);
  client.send(targetOf(o), content, clientMsgId).then(
    (ack) => {
      const i = v.pending.indexOf(view);
      if (i >= 0) v.pending.splice(i, 1);
      view.seq = toNumber(ack.seq);
      view.messageId = String(ack.messageId);
      view.time = toNumber(ack.serverTimeMs);
      view.state = "sent";
      if (!v.bySeq.has(view.seq)) v.bySeq.set(view.seq, view);
      if (open?.id === o.id) renderMessages();
      scheduleListRefresh();
    },
    (e) => {
      view.state = "failed";
      view.error = describeError(e);
      if (open?.id === o.id) renderMessages();
    },
  );
}

function retry(view) {
  // The same client message id: if the first try was stored after all, it is not stored twice.
  if (open) send(open, view.content, view.clientMsgId, view);
}

async function recall(view) {
  try {
    await client.recall(view.messageId);
    // The recall's event reaches this device through the inbox too; show it now.
    view.recalled = true;
    view.content = undefined;
    renderMessages();
    scheduleListRefresh();
  } catch (e) {
    $("chat-error").textContent = describeError(e);
  }
}

function startEdit(view) {
  editing = view;
  $("composer-text").value = view.content?.text?.text ?? "";
  setComposerMode();
  $("composer-text").focus();
}

function setComposerMode() {
  $("composer-send").textContent = editing ? "Save" : "Send";
  $("composer").classList.toggle("editing", Boolean(editing));
}

async function submitComposer(event) {
  event.preventDefault();
  if (!open) return;
  const box = $("composer-text");
  const text = box.value;
  if (!text.trim()) return;
  box.value = "";
  if (editing) {
    const view = editing;
    editing = undefined;
    setComposerMode();
    try {
      await client.edit(view.messageId, { text: { text } });
      view.content = { text: { text } };
      view.edited = true;
      renderMessages();
      scheduleListRefresh();
    } catch (e) {
      $("chat-error").textContent = describeError(e);
      box.value = text;
    }
    return;
  }
  send(open, { text: { text } });
}

function onComposerKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  } else if (event.key === "Escape" && editing) {
    editing = undefined;
    $("composer-text").value = "";
    setComposerMode();
  }
}

function onComposerInput() {
  if (!open?.peer || !client) return;
  const now = Date.now();
  if (now - lastTypingSent < TYPING_SEND_EVERY_MS) return;
  lastTypingSent = now;
  client.typing(open.peer).catch(() => {});
}

function upload(file, onProgress) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/files?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("authorization", `Bearer ${client.deviceToken}`);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body.message ?? `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("upload failed: the connection was lost"));
    xhr.send(file);
  });
}

async function onFile() {
  const input = $("composer-file");
  const file = input.files?.[0];
  input.value = "";
  if (!file || !open) return;
  // Where the file goes is decided now: the user may open another conversation meanwhile.
  const target = open;
  const session = client;
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  try {
    const info = await upload(file, (p) => (bar.value = p));
    if (client !== session) return;
    const content = info.thumbnails?.length
      ? { image: { fileId: info.file_id } }
      : { file: { fileId: info.file_id, name: info.name || file.name } };
    send(target, content);
  } catch (e) {
    $("chat-error").textContent = describeError(e);
  } finally {
    bar.hidden = true;
  }
}

async function toggleFlag(flag) {
  const c = conversations.get(open?.id);
  if (!c) return;
  try {
    await client.updateConversation(c.conversationId, { [flag]: !c[flag] });
    await refreshConversations();
  } catch (e) {
    $("chat-error").textContent = describeError(e);
  }
}

async function toggleBlock() {
  if (!open?.peer) return;
  try {
    if (blocked.has(open.peer)) await client.unblock(open.peer);
    else await client.block(open.peer);
    await refreshBlocks();
  } catch (e) {
    $("chat-error").textContent = describeError(e);
  }
}

// ---- people ----

async function refreshFriends() {
  if (!client) return;
  try {
    const r = await client.request(MessageType.FRIEND_LIST, { sinceVersion: "0" });
    friends = (r.friends ?? []).map((f) => f.userId);
    requests = r.requests ?? [];
    renderFriends();
    if (friends.length) {
      for (const p of await client.subscribePresence(friends)) onPresence(p);
    }
  } catch (e) {
    console.warn("friends", e);
  }
}

async function refreshBlocks() {
  if (!client) return;
  try {
    const r = await client.request(MessageType.BLOCK_LIST, {});
    blocked.clear();
    for (const u of r.userIds ?? []) blocked.add(u);
    renderChatHeader();
  } catch (e) {
    console.warn("blocks", e);
  }
}

function renderFriends() {
  $("friend-requests").replaceChildren(
    ...requests.map((r) => {
      const incoming = r.toUser === me;
      const other = incoming ? r.fromUser : r.toUser;
      return el(
        "li",
        { class: "friend-request", "data-user": other, "data-direction": incoming ? "incoming" : "outgoing" },
        el("span", { text: incoming ? `${other} wants to be friends` : `Asked ${other}` }),
        incoming
          ? el("button", { class: "accept", type: "button", onclick: () => respond(other, true), text: "Accept" })
          : null,
        incoming
          ? el("button", { class: "decline secondary", type: "button", onclick: () => respond(other, false), text: "Decline" })
          : null,
      );
    }),
  );
  $("friends").replaceChildren(
    ...friends.map((u) =>
      el(
        "li",
        { class: "friend", "data-user": u },
        el("span", { class: "presence", role: "img", "data-online": presence.get(u) === true, "aria-label": presence.get(u) ? "online" : "offline" }),
        el("button", { type: "button", class: "link", onclick: () => openConversation({ peer: u }), text: u }),
      ),
    ),
  );
  // Opened when a new request comes in, not again each time the list is drawn.
  const incoming = requests.filter((r) => r.toUser === me).length;
  if (incoming > incomingSeen) $("people").open = true;
  incomingSeen = incoming;
}

async function respond(user, accept) {
  try {
    await client.respondFriend(user, accept);
    await refreshFriends();
  } catch (e) {
    alert(describeError(e));
  }
}

// ---- groups ----

async function createGroup(event) {
  event.preventDefault();
  const name = $("group-name").value.trim();
  const members = $("group-members")
    .value.split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s && s !== me);
  $("group-error").textContent = "";
  try {
    const group = await client.createGroup(name, members);
    const gid = toNumber(group.groupId);
    groupNames.set(gid, group.name ?? name);
    $("group-dialog").close();
    $("group-name").value = "";
    $("group-members").value = "";
    await refreshConversations();
    await openConversation({ groupId: gid });
  } catch (e) {
    $("group-error").textContent = describeError(e);
  }
}

async function addMember(event) {
  event.preventDefault();
  if (!open?.groupId) return;
  const input = $("group-add-user");
  const users = input.value.split(/[\s,]+/).filter(Boolean);
  try {
    await client.addMembers(open.groupId, users);
    input.value = "";
  } catch (e) {
    $("chat-error").textContent = describeError(e);
  }
}

// ---- wiring ----

function wire() {
  $("auth").addEventListener("submit", (e) => onAuth(e, false));
  $("auth-register").addEventListener("click", (e) => {
    if ($("auth").reportValidity()) void onAuth(e, true);
  });
  $("logout").addEventListener("click", () => void logout());
  $("new-chat").addEventListener("submit", (e) => {
    e.preventDefault();
    const peer = $("new-chat-user").value.trim();
    if (!peer) return;
    $("new-chat-user").value = "";
    void openConversation({ peer });
  });
  $("friend-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const user = $("friend-user").value.trim();
    if (!user) return;
    try {
      await client.requestFriend(user);
      $("friend-user").value = "";
      await refreshFriends();
    } catch (err) {
      alert(describeError(err));
    }
  });
  $("new-group").addEventListener("click", () => {
    $("group-error").textContent = "";
    $("group-dialog").showModal();
    $("group-name").focus();
  });
  $("group-form").addEventListener("submit", (e) => void createGroup(e));
  $("group-cancel").addEventListener("click", () => $("group-dialog").close());
  $("group-add-form").addEventListener("submit", (e) => void addMember(e));
  $("composer").addEventListener("submit", (e) => void submitComposer(e));
  $("composer-text").addEventListener("keydown", onComposerKey);
  $("composer-text").addEventListener("input", onComposerInput);
  $("composer-file").addEventListener("change", () => void onFile());
  $("pin").addEventListener("click", () => void toggleFlag("pinned"));
  $("mute").addEventListener("click", () => void toggleFlag("muted"));
  $("block").addEventListener("click", () => void toggleBlock());
  $("back").addEventListener("click", closeConversation);
  $("messages").addEventListener("scroll", () => {
    if (open && $("messages").scrollTop === 0) void loadOlder(open.id);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && open) void markRead(open.id);
  });
}

async function resume() {
  const saved = sessionStorage.getItem("tern.session");
  if (!saved || client) return;
  let session;
  try {
    session = JSON.parse(saved);
  } catch {
    sessionStorage.removeItem("tern.session");
    return;
  }
  $("auth-user").value = session.userId;
  try {
    await start(session.userId, { token: session.token });
  } catch (e) {
    if (retryable(e)) {
      // The server cannot be reached now: the token is still good, try again shortly.
      $("auth-error").textContent = `Cannot reach the server (${describeError(e)}); trying again…`;
      setTimeout(() => void resume(), 3000);
      return;
    }
    sessionStorage.removeItem("tern.session");
    showLogin(`Please log in again (${describeError(e)}).`);
  }
}

wire();
void resume();
