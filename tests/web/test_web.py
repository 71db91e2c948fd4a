"""The web client against a real server, through the DOM contract of web/app (ids, classes and
data- attributes only; no styling, no wording beyond what the contract names).

Every test has its own server; user ids still carry the test's name so that a screenshot or a
server log says which test it came from.
"""

import re
import struct
import zlib

import pytest
from playwright.sync_api import expect

PASSWORD = "correct horse battery"
DELIVERED = re.compile(r"^(sent|read)$")
ANY = re.compile(r".")
SEQ = re.compile(r"^\d+$")
RECALLED = re.compile(r"(^|\s)recalled(\s|$)")

# A group's own events (created, member added) are entries of its log too, marked `event`:
# the logs compared here are what people wrote.
MESSAGE = "#messages li.message:not(.event)"


class User:
    """One person at one browser tab: a user id and the page (a device) they use."""

    def __init__(self, web, name, ctx=None, label=None, **options):
        self.name = name
        self.page = web.page(ctx, label=label or name, **options)


# --- what a user does -------------------------------------------------------------------------


def expect_logged_in(user):
    page = user.page
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#auth-screen")).to_be_hidden()
    expect(page.locator("#me")).to_contain_text(user.name)
    expect(page.locator("#status")).to_have_attribute("data-state", "online")


def register(user):
    user.page.fill("#auth-user", user.name)
    user.page.fill("#auth-password", PASSWORD)
    user.page.click("#auth-register")
    expect_logged_in(user)


def login(user, password=PASSWORD):
    user.page.fill("#auth-user", user.name)
    user.page.fill("#auth-password", password)
    user.page.click("#auth-login")
    expect_logged_in(user)


def open_chat(user, peer):
    """Opens the 1:1 conversation with `peer` from the sidebar."""
    user.page.fill("#new-chat-user", peer.name)
    user.page.click("#new-chat-open")
    expect(user.page.locator("#chat")).to_have_attribute("data-conversation-id", ANY)
    expect(user.page.locator("#composer-text")).to_be_editable()


def conversation(user, peer=None, group=False):
    if group:
        return user.page.locator("#conversations li.conversation[data-group-id]")
    return user.page.locator(f'#conversations li.conversation[data-peer="{peer.name}"]')


def open_conversation(user, item):
    """Opens a conversation from the list, the way a user who got a message does."""
    expect(item).to_have_count(1)
    item.locator("button.open").click()
    expect(user.page.locator("#chat")).to_have_attribute(
        "data-conversation-id", item.get_attribute("data-conversation-id")
    )


def reveal(user, selector):
    """Opens the collapsed sections (<details>) around an element, as a user would to reach it."""
    closed = user.page.locator(f"details:not([open]):has({selector}) > summary")
    for i in range(closed.count()):
        closed.nth(i).click()
    expect(user.page.locator(f"details:not([open]):has({selector})")).to_have_count(0)


def send(user, text, enter=False):
    user.page.fill("#composer-text", text)
    if enter:
        user.page.press("#composer-text", "Enter")
    else:
        user.page.click("#composer-send")
    # The composer empties once the message is taken: the next one cannot merge into it.
    expect(user.page.locator("#composer-text")).to_have_value("")


def messages(user):
    return user.page.locator(MESSAGE)


def own_message(user, text):
    return user.page.locator(f'{MESSAGE}[data-mine="true"]').filter(
        has=user.page.locator(".body", has_text=text)
    )


class Log:
    """What a conversation must show: who wrote what, in order."""

    def __init__(self):
        self.entries = []

    def add(self, author, text):
        self.entries.append((author.name, text))

    @property
    def texts(self):
        return [text for _, text in self.entries]

    def expect_at(self, *users):
        """Exactly these messages, in this order, from these senders: none missing, none twice."""
        for user in users:
            expect(user.page.locator(f"{MESSAGE} .body")).to_have_text(self.texts)
            items = messages(user)
            for i, (author, _) in enumerate(self.entries):
                item = items.nth(i)
                expect(item).to_have_attribute("data-sender", author)
                expect(item).to_have_attribute(
                    "data-mine", "true" if author == user.name else "false"
                )

    def expect_delivered(self, *users):
        """Every own message reached the server, and every entry has its place in the log."""
        for user in users:
            self.expect_at(user)
            items = messages(user)
            for i, (author, _) in enumerate(self.entries):
                if author == user.name:
                    expect(items.nth(i)).to_have_attribute("data-state", DELIVERED)
            every = user.page.locator("#messages li.message")
            for i in range(every.count()):
                expect(every.nth(i)).to_have_attribute("data-seq", SEQ)
            seqs = [int(s) for s in every.evaluate_all("els => els.map(e => e.dataset.seq)")]
            assert seqs == sorted(set(seqs)), f"sequence numbers out of order or repeated: {seqs}"


def say(log, author, text, everyone, enter=False):
    """`author` sends `text`; everyone sees the whole conversation so far, exactly."""
    send(author, text, enter)
    log.add(author, text)
    log.expect_at(*everyone)


# --- tests ------------------------------------------------------------------------------------


def test_chat_both_ways(web):
    alice = User(web, "chat-alice")
    bob = User(web, "chat-bob")
    register(alice)
    register(bob)
    log = Log()

    open_chat(alice, bob)
    say(log, alice, "Hi Bob!", [alice])
    open_conversation(bob, conversation(bob, alice))
    log.expect_at(bob)

    both = [alice, bob]
    say(log, alice, "Are you coming to the meeting?", both)
    say(log, bob, "Hi Alice", both, enter=True)
    say(log, bob, "Yes, in ten minutes", both, enter=True)
    # Markup is text: shown as typed, never interpreted.
    say(log, alice, "<b>bring</b> the <i>slides</i> & notes", both)
    say(log, bob, "Will do \N{THUMBS UP SIGN} \N{SNOWMAN}", both, enter=True)
    say(log, alice, "Thanks", both)

    # Shift+Enter is a new line inside one message, not a send.
    composer = bob.page.locator("#composer-text")
    composer.fill("line one")
    composer.press("Shift+Enter")
    composer.press_sequentially("line two")
    expect(composer).to_have_value("line one\nline two")
    log.expect_at(bob)
    composer.press("Enter")
    log.add(bob, "line one\nline two")
    log.expect_delivered(alice, bob)

    expect(conversation(alice, bob).locator(".last")).to_contain_text("line two")
    web.shot(alice.page, "alice")
    web.shot(bob.page, "bob")


def test_unread_badge_follows_reads_on_other_devices(web):
    alice = User(web, "unread-alice")
    register(alice)
    # Two tabs of one browser profile: each tab is its own device of bob.
    bob_profile = web.context()
    tab1 = User(web, "unread-bob", bob_profile, label="unread-bob-tab1")
    tab2 = User(web, "unread-bob", bob_profile, label="unread-bob-tab2")
    register(tab1)
    login(tab2)
    tabs = [tab1, tab2]
    for tab in tabs:
        expect(tab.page.locator("#chat")).to_have_attribute("data-conversation-id", "")

    open_chat(alice, tab1)
    log = Log()
    for text in ["one", "two", "three"]:
        send(alice, text)
        log.add(alice, text)
    log.expect_delivered(alice)

    for tab in tabs:
        item = conversation(tab, alice)
        badge = item.locator(".unread")
        expect(badge).to_be_visible()
        expect(badge).to_have_attribute("data-count", "3")
        expect(badge).to_have_text("3")
        expect(item.locator(".last")).to_contain_text("three")
    web.shot(tab2.page, "tab2-unread")

    tab1.page.bring_to_front()
    open_conversation(tab1, conversation(tab1, alice))
    log.expect_at(tab1)
    # Read on one device is read on all of them, without a reload.
    for tab in tabs:
        badge = conversation(tab, alice).locator(".unread")
        expect(badge).to_be_hidden()
        expect(badge).to_have_attribute("data-count", "0")
    web.shot(tab2.page, "tab2-read-elsewhere")


def test_recall(web):
    alice = User(web, "recall-alice")
    bob = User(web, "recall-bob")
    register(alice)
    register(bob)
    open_chat(alice, bob)
    log = Log()
    for text in ["Meant for someone else", "This one stays"]:
        send(alice, text)
        log.add(alice, text)
    open_conversation(bob, conversation(bob, alice))
    log.expect_delivered(alice, bob)

    message = own_message(alice, "Meant for someone else")
    message.hover()
    message.locator("button.recall").click()

    for user in (alice, bob):
        expect(messages(user)).to_have_count(2)
        recalled, kept = messages(user).nth(0), messages(user).nth(1)
        expect(recalled).to_have_class(RECALLED)
        expect(recalled.locator(".body")).to_have_text("Message recalled")
        expect(kept).not_to_have_class(RECALLED)
        expect(kept.locator(".body")).to_have_text("This one stays")
    web.shot(bob.page, "bob-sees-recall")


def test_edit(web):
    alice = User(web, "edit-alice")
    bob = User(web, "edit-bob")
    register(alice)
    register(bob)
    open_chat(alice, bob)
    send(alice, "See you at 5")
    open_conversation(bob, conversation(bob, alice))
    log = Log()
    log.add(alice, "See you at 5")
    log.expect_delivered(alice, bob)

    message = own_message(alice, "See you at 5")
    composer = alice.page.locator("#composer-text")
    save = alice.page.locator("#composer-send")

    # Escape leaves edit mode without touching the message.
    message.hover()
    message.locator("button.edit").click()
    expect(composer).to_have_value("See you at 5")
    expect(save).to_have_text("Save")
    composer.press("Escape")
    expect(save).to_have_text("Send")

    message.hover()
    message.locator("button.edit").click()
    expect(composer).to_have_value("See you at 5")
    expect(save).to_have_text("Save")
    composer.fill("See you at 6")
    save.click()
    expect(save).to_have_text("Send")

    edited = Log()
    edited.add(alice, "See you at 6")
    edited.expect_at(alice, bob)
    for user in (alice, bob):
        expect(messages(user).first.locator(".edited")).to_be_visible()
    web.shot(bob.page, "bob-sees-edit")


@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "stopped"])
def test_restart_mid_chat(web, server, graceful):
    alice = User(web, "restart-alice")
    bob = User(web, "restart-bob")
    register(alice)
    register(bob)
    both = [alice, bob]
    status = [user.page.locator("#status") for user in both]
    log = Log()

    open_chat(alice, bob)
    say(log, alice, "before 1", [alice])
    open_conversation(bob, conversation(bob, alice))
    say(log, bob, "before 2", both)
    say(log, alice, "before 3", both)
    log.expect_delivered(alice, bob)

    # SIGKILL is a crash; SIGTERM a deploy. Either way the pages must notice and come back.
    if graceful:
        server.stop()
    else:
        server.kill()
    for s in status:
        expect(s).not_to_have_attribute("data-state", "online")

    # The composer keeps working while the server is away; the messages wait, in order.
    send(alice, "typed while down 1")
    send(alice, "typed while down 2", enter=True)
    log.add(alice, "typed while down 1")
    log.add(alice, "typed while down 2")
    log.expect_at(alice)
    for text in ("typed while down 1", "typed while down 2"):
        item = own_message(alice, text)
        expect(item).to_have_attribute("data-state", "sending")
        expect(item).to_have_attribute("data-seq", "")
    web.shot(alice.page, "server-down")

    server.start()
    for s in status:
        expect(s).to_have_attribute("data-state", "online")
    log.expect_delivered(alice, bob)

    say(log, bob, "after restart 1", both)
    say(log, alice, "after restart 2", both)
    log.expect_delivered(alice, bob)
    web.shot(bob.page, "after-restart")


def test_group_of_three(web):
    alice, bob, carol = everyone = [
        User(web, name) for name in ("grp-alice", "grp-bob", "grp-carol")
    ]
    for user in everyone:
        register(user)

    page = alice.page
    page.click("#new-group")
    dialog = page.locator("dialog#group-dialog")
    expect(dialog).to_be_visible()
    page.fill("#group-name", "Weekend trip")
    page.fill("#group-members", bob.name)
    page.click("#group-create")
    expect(dialog).to_be_hidden()
    expect(page.locator("#chat")).to_have_attribute("data-conversation-id", ANY)
    expect(conversation(alice, group=True).locator(".conversation-name")).to_have_text(
        "Weekend trip"
    )
    # The third member is added from the open group, and everyone sees it happen.
    page.fill("#group-add-user", carol.name)
    page.click("#group-add")
    expect(page.locator("#group-add-user")).to_have_value("")
    expect(page.locator("#messages li.message.event").last).to_contain_text(carol.name)

    log = Log()
    say(log, alice, "Who is driving?", [alice])
    for user in (bob, carol):
        item = conversation(user, group=True)
        expect(item.locator(".conversation-name")).to_have_text("Weekend trip")
        open_conversation(user, item)
    log.expect_at(*everyone)

    for author, text in [
        (bob, "I can drive"),
        (carol, "I will bring snacks"),
        (alice, "Perfect"),
        (carol, "Leaving at 8?"),
        (bob, "8 works"),
    ]:
        say(log, author, text, everyone)
    log.expect_delivered(*everyone)
    web.shot(carol.page, "carol")


def test_pin_and_mute(web):
    alice, bob, carol = [User(web, name) for name in ("flags-alice", "flags-bob", "flags-carol")]
    for user in (alice, bob, carol):
        register(user)
    open_chat(bob, alice)
    send(bob, "from bob")
    open_chat(carol, alice)
    send(carol, "from carol")
    # Newest first: carol's conversation above bob's.
    items = alice.page.locator("#conversations li.conversation")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-peer", carol.name)

    # Pinned goes first, whatever is newer.
    open_conversation(alice, conversation(alice, bob))
    alice.page.click("#pin")
    expect(conversation(alice, bob)).to_have_attribute("data-pinned", "true")
    expect(items.nth(0)).to_have_attribute("data-peer", bob.name)

    # Muted: still counted on its own badge, but not in the total.
    open_conversation(alice, conversation(alice, carol))
    alice.page.click("#mute")
    expect(conversation(alice, carol)).to_have_attribute("data-muted", "true")
    open_conversation(alice, conversation(alice, bob))
    send(carol, "are you there?")
    badge = conversation(alice, carol).locator(".unread")
    expect(badge).to_have_attribute("data-count", "1")
    expect(alice.page).to_have_title("Tern")

    # Another tab of alice (another device) shows the same flags, read from the server.
    other = User(web, alice.name, label="flags-alice-tab2")
    login(other)
    expect(conversation(other, bob)).to_have_attribute("data-pinned", "true")
    expect(conversation(other, carol)).to_have_attribute("data-muted", "true")
    expect(other.page.locator("#conversations li.conversation").nth(0)).to_have_attribute(
        "data-peer", bob.name
    )


def test_typing_and_read_receipt(web):
    alice = User(web, "typing-alice")
    bob = User(web, "typing-bob")
    register(alice)
    register(bob)
    typing = alice.page.locator("#typing")

    open_chat(alice, bob)
    log = Log()
    say(log, alice, "Are you there?", [alice])
    first = own_message(alice, "Are you there?")
    # Bob has not opened the conversation: delivered, not read.
    expect(first).to_have_attribute("data-state", "sent")
    expect(typing).to_have_text("")

    bob.page.bring_to_front()
    open_conversation(bob, conversation(bob, alice))
    expect(first).to_have_attribute("data-state", "read")

    bob.page.locator("#composer-text").press_sequentially("Yes, one moment", delay=30)
    expect(typing).to_contain_text(bob.name)
    web.shot(alice.page, "bob-typing")
    bob.page.press("#composer-text", "Enter")
    log.add(bob, "Yes, one moment")
    log.expect_at(alice, bob)
    # The notice lasts a few seconds after the last keystroke, then goes.
    expect(typing).to_have_text("")

    # A message that arrives while bob has the conversation open is read at once.
    send(alice, "Take your time")
    expect(own_message(alice, "Take your time")).to_have_attribute("data-state", "read")


def test_friends_and_presence(web):
    alice = User(web, "friend-alice")
    bob = User(web, "friend-bob")
    register(alice)
    register(bob)
    for user in (alice, bob):
        reveal(user, "#friend-user")
        reveal(user, "#friend-requests")
        reveal(user, "#friends")

    alice.page.fill("#friend-user", bob.name)
    alice.page.click("#friend-add")
    outgoing = alice.page.locator(
        f'#friend-requests li.friend-request[data-user="{bob.name}"][data-direction="outgoing"]'
    )
    incoming = bob.page.locator(
        f'#friend-requests li.friend-request[data-user="{alice.name}"][data-direction="incoming"]'
    )
    expect(outgoing).to_be_visible()
    expect(incoming).to_be_visible()
    web.shot(bob.page, "bob-request")
    incoming.locator("button.accept").click()

    expect(outgoing).to_have_count(0)
    expect(incoming).to_have_count(0)
    bob_at_alice = alice.page.locator(f'#friends li.friend[data-user="{bob.name}"]')
    alice_at_bob = bob.page.locator(f'#friends li.friend[data-user="{alice.name}"]')
    expect(bob_at_alice).to_be_visible()
    expect(alice_at_bob).to_be_visible()
    expect(bob_at_alice.locator(".presence")).to_have_attribute("data-online", "true")
    expect(alice_at_bob.locator(".presence")).to_have_attribute("data-online", "true")
    web.shot(alice.page, "bob-online")

    bob.page.close()
    expect(bob_at_alice.locator(".presence")).to_have_attribute("data-online", "false")
    web.shot(alice.page, "bob-offline")


def test_block(web):
    alice = User(web, "block-alice")
    bob = User(web, "block-bob")
    register(alice)
    register(bob)

    open_chat(bob, alice)
    block = bob.page.locator("#block")
    expect(block).to_have_text("Block")
    block.click()
    expect(block).to_have_text("Unblock")

    open_chat(alice, bob)
    log = Log()
    say(log, alice, "Can we talk?", [alice])
    refused = own_message(alice, "Can we talk?")
    expect(refused).to_have_attribute("data-state", "failed")
    expect(refused.locator("button.retry")).to_be_visible()
    # The server has answered alice: nothing reached bob, and nothing will.
    expect(messages(bob)).to_have_count(0)
    web.shot(alice.page, "refused")

    # Unblocked, the same message goes through on retry, once.
    block.click()
    expect(block).to_have_text("Block")
    refused.locator("button.retry").click()
    expect(refused).to_have_attribute("data-state", DELIVERED)
    expect(refused.locator("button.retry")).to_have_count(0)
    log.expect_delivered(alice, bob)


def png(width, height):
    """A real PNG of `width` x `height`, a colour gradient, made without an image library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_pictures_and_files(web):
    alice = User(web, "files-alice")
    bob = User(web, "files-bob")
    register(alice)
    register(bob)
    open_chat(alice, bob)
    send(alice, "Two things for you")
    open_conversation(bob, conversation(bob, alice))

    # A picture: uploaded over HTTP, sent as an image message, shown by its thumbnail.
    alice.page.set_input_files(
        "#composer-file", {"name": "sunset.png", "mimeType": "image/png", "buffer": png(640, 400)}
    )
    expect(alice.page.locator("#upload-progress")).to_be_hidden()
    for user in (alice, bob):
        picture = messages(user).nth(1).locator("img.thumbnail")
        expect(picture).to_have_count(1)
        # Loaded from the server with the device's token: a broken image has no natural size.
        user.page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=picture.element_handle(), timeout=10_000
        )
        width = picture.evaluate("img => img.naturalWidth")
        assert 0 < width < 640, f"the thumbnail, not the picture, is shown: {width}px wide"

    # A file: shown by its name; a click downloads the very bytes that were sent.
    notes = "agenda: 1. lunch 2. slides\n".encode() * 50
    alice.page.set_input_files(
        "#composer-file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": notes}
    )
    link = messages(bob).nth(2).locator("a.file")
    expect(link).to_contain_text("notes.txt")
    with bob.page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "notes.txt"
    with open(download.value.path(), "rb") as f:
        assert f.read() == notes
    for user in (alice, bob):
        expect(messages(user)).to_have_count(3)
    expect(messages(alice).nth(2)).to_have_attribute("data-state", DELIVERED)
    web.shot(bob.page, "bob-got-files")


def test_history_loads_as_you_scroll_up(web):
    alice = User(web, "history-alice")
    bob = User(web, "history-bob")
    register(alice)
    register(bob)
    open_chat(alice, bob)
    texts = [f"message {i:02}" for i in range(45)]
    for text in texts:
        send(alice, text, enter=True)
    expect(messages(alice).last).to_have_attribute("data-state", DELIVERED)

    # Bob opens the conversation: the newest page, not all of it.
    open_conversation(bob, conversation(bob, alice))
    expect(messages(bob).last.locator(".body")).to_have_text(texts[-1])
    shown = messages(bob).count()
    assert shown < len(texts), f"the whole history came at once ({shown} messages)"

    # Scrolling to the top loads the older pages, until the first message, in order.
    for _ in range(10):
        if messages(bob).count() == len(texts):
            break
        bob.page.locator("#messages").evaluate("list => list.scrollTo(0, 0)")
        expect(messages(bob)).not_to_have_count(shown)
        shown = messages(bob).count()
    expect(bob.page.locator(f"{MESSAGE} .body")).to_have_text(texts)


def test_keyboard_only_with_labelled_controls(web):
    """Everything on the way to a reply works from the keyboard, and the controls carry the
    names a screen reader reads out."""
    alice = User(web, "keys-alice")
    bob = User(web, "keys-bob")
    register(alice)
    register(bob)

    # Bob starts the chat without the mouse: type the id, Enter, type the message, Enter.
    page = bob.page
    page.locator("#new-chat-user").focus()
    page.keyboard.type(alice.name)
    page.keyboard.press("Enter")
    expect(page.locator("#composer-text")).to_be_focused()
    page.keyboard.type("Can you hear me?")
    page.keyboard.press("Enter")
    expect(own_message(bob, "Can you hear me?")).to_have_attribute("data-state", DELIVERED)

    # Alice tabs to the conversation and opens it with Enter; the composer takes the focus.
    page = alice.page
    item = conversation(alice, bob).locator("button.open")
    expect(item).to_be_visible()
    page.locator("#logout").focus()
    for _ in range(30):
        if item.evaluate("b => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(item).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#composer-text")).to_be_focused()
    page.keyboard.type("Loud and clear")
    page.keyboard.press("Enter")
    log = Log()
    log.add(bob, "Can you hear me?")
    log.add(alice, "Loud and clear")
    log.expect_delivered(alice, bob)

    # What assistive technology announces: named controls, the messages as a log.
    expect(page.get_by_role("log", name="Messages")).to_be_visible()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(re.compile("online"))
    expect(page.get_by_label("Attach")).to_be_attached()


def test_reload_and_a_duplicated_tab(web):
    alice = User(web, "tabs-alice")
    bob = User(web, "tabs-bob")
    register(alice)
    register(bob)
    open_chat(alice, bob)
    send(alice, "before the reload")

    # A reload logs in again with the tab's own token: no password, the same device.
    device = alice.page.evaluate("sessionStorage.getItem('tern.device')")
    alice.page.reload()
    expect_logged_in(alice)
    assert alice.page.evaluate("sessionStorage.getItem('tern.device')") == device
    open_conversation(alice, conversation(alice, bob))
    expect(messages(alice).locator(".body")).to_have_text(["before the reload"])

    # A duplicated tab starts with a copy of the tab's sessionStorage, device id and token
    # included. It must not log in as the same device (that would replace the first tab's
    # connection): it asks for a login of its own and becomes another device.
    saved = alice.page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")
    dup = User.__new__(User)
    dup.name = alice.name
    dup.page = alice.page.context.new_page()
    dup.page.on("pageerror", lambda error: web.errors.append(f"tabs-alice-dup: {error}"))
    web.pages.append(("tabs-alice-dup", dup.page))
    dup.page.add_init_script(
        f"for (const [k, v] of Object.entries({saved})) sessionStorage.setItem(k, v);"
    )
    dup.page.goto(web.server.url)
    expect(dup.page.locator("#auth-screen")).to_be_visible()
    login(dup)
    assert dup.page.evaluate("sessionStorage.getItem('tern.device')") != device
    open_chat(dup, bob)
    send(dup, "from the second tab")

    # Both tabs stay connected and converge.
    log = Log()
    log.add(alice, "before the reload")
    log.add(alice, "from the second tab")
    expect(alice.page.locator("#status")).to_have_attribute("data-state", "online")
    log.expect_delivered(alice, dup)


def test_back_on_a_phone_leaves_new_messages_unread(web):
    alice = User(web, "back-alice", viewport=web.PHONE)
    bob = User(web, "back-bob")
    register(alice)
    register(bob)
    open_chat(bob, alice)
    send(bob, "first")
    open_conversation(alice, conversation(alice, bob))
    alice.page.click("#back")
    expect(alice.page.locator("#chat")).to_have_attribute("data-conversation-id", "")
    send(bob, "while alice looks at the list")
    badge = conversation(alice, bob).locator(".unread")
    expect(badge).to_have_attribute("data-count", "1")
    expect(badge).to_be_visible()


def test_phone_and_desktop_screenshots(web):
    # Plain user ids here: these two screenshots are the README's.
    bob = User(web, "bob")
    register(bob)
    alice = User(
        web,
        "alice",
        viewport=web.PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = alice.page
    register(alice)
    page.click("#logout")
    expect(page.locator("#auth-screen")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()

    # A wrong password is refused on the login screen.
    page.fill("#auth-user", alice.name)
    page.fill("#auth-password", "not the password")
    page.click("#auth-login")
    expect(page.locator("#auth-error")).to_be_visible()
    expect(page.locator("#auth-error")).not_to_have_text("")
    expect(page.locator("#app")).to_be_hidden()
    login(alice)

    # Friends, so that each side's header shows the other online.
    for user in (alice, bob):
        reveal(user, "#friend-requests")
    bob.page.fill("#friend-user", alice.name)
    bob.page.click("#friend-add")
    request = page.locator(f'#friend-requests li.friend-request[data-user="{bob.name}"]')
    request.locator("button.accept").click()
    expect(page.locator(f'#friends li.friend[data-user="{bob.name}"]')).to_be_visible()

    open_chat(alice, bob)
    log = Log()
    say(log, alice, "Hi Bob! Are we still on for lunch?", [alice])
    open_conversation(bob, conversation(bob, alice))
    both = [alice, bob]
    for author, text in [
        (bob, "Yes! 12:30 at the usual place?"),
        (alice, "Perfect, I'll book a table"),
        (bob, "Great, see you there"),
        (alice, "Running 5 minutes late, sorry"),
        (bob, "No problem, I'll order drinks"),
    ]:
        say(log, author, text, both)
    log.expect_delivered(*both)
    # The pictures show a settled conversation: no typing notice left over from the last reply.
    for user in both:
        expect(user.page.locator("#typing")).to_have_text("")
    web.doc_shot(alice.page, "phone.png")
    web.doc_shot(bob.page, "chat.png")
