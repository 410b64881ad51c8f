"""Reading a Telegram update: what the bot uses of it, with every field's type checked.

:func:`parse_update` reads a webhook body (bounded, UTF-8, JSON, :meth:`telegram.Update.de_json`);
:func:`incoming` reads an :class:`telegram.Update` that PTB already parsed (polling). Both return an
:class:`IncomingUpdate` or raise :class:`MalformedUpdate` with the reason (never the body):
``Update.de_json`` keeps whatever JSON types it was given, so each field used is checked here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TypeGuard

from telegram import Bot, Chat, Message, MessageEntity, Update, User

__all__ = [
    "MAX_JSON_DEPTH",
    "Entity",
    "IncomingUpdate",
    "MalformedUpdate",
    "incoming",
    "json_depth_exceeds",
    "parse_update",
]

# Real updates nest under 10 levels (update.message.reply_to_message.entities[0].user is 6); json.loads
# and Update.de_json recurse once or more per level, so a far deeper body ends in RecursionError.
MAX_JSON_DEPTH = 64
CHAT_ID_RANGE = range(-(2**63), 2**63)  # Bot API ids are 64-bit signed integers
GROUP_TYPES = frozenset({"group", "supergroup"})
ENTITY_KINDS = frozenset({"mention", "text_mention", "bot_command"})  # what the bot looks at
# What Update.de_json raises on a JSON object of the wrong shape: TypeError (missing or unexpected
# arguments, ``**`` of a non-mapping), AttributeError (``.copy()`` of a non-dict), ValueError and
# OverflowError/OSError (``datetime.fromtimestamp`` of NaN, 1e300, inf), KeyError/IndexError.
_PARSE_ERRORS = (TypeError, AttributeError, ValueError, ArithmeticError, OSError, KeyError, IndexError)
# A JSON string (possessive, so linear time; an unterminated one runs to the end of the text)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class MalformedUpdate(ValueError):
    """A delivery that is not an update this bot can use; it is acknowledged and dropped."""


@dataclass(frozen=True, slots=True)
class Entity:
    """A mention or command in the text, as code-point offsets (Telegram counts UTF-16 units)."""

    kind: str  # "mention" (@username), "text_mention" (a user without a username), "bot_command"
    start: int
    end: int
    user_id: int | None = None  # the user of a text_mention


@dataclass(frozen=True, slots=True)
class IncomingUpdate:
    """What the bot uses of an update: its id and, for a text message, where it came from and the text."""

    update_id: int
    chat_id: int | None = None  # None: nothing to answer (no message, or a message without text)
    text: str = ""
    message_id: int | None = None
    chat_type: str = "private"
    thread_id: int | None = None  # the forum topic of the message, to answer in the same topic
    entities: tuple[Entity, ...] = ()
    reply_to_user_id: int | None = None  # the author of the message this one replies to

    @property
    def in_group(self) -> bool:
        return self.chat_type in GROUP_TYPES


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays and objects more than ``limit`` levels deep.

    A cheap scan over the brackets outside strings, run before :func:`json.loads` (which recurses once
    per level). On text that is not JSON it may overestimate, never underestimate, the depth
    :func:`json.loads` would reach before failing.
    """
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def parse_update(body: bytes, bot: Bot | None = None) -> IncomingUpdate:
    """Read one webhook body as an update. Raises :class:`MalformedUpdate` (with the reason, not the
    body) when it is not UTF-8 JSON of bounded depth, not an object, not readable by
    :meth:`telegram.Update.de_json`, or carries fields of the wrong type."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedUpdate(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if json_depth_exceeds(text, MAX_JSON_DEPTH):
        raise MalformedUpdate(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer over the digit limit
        raise MalformedUpdate(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedUpdate(f"a JSON {type(data).__name__}, not an object")
    try:
        update = Update.de_json(data, bot)
    except _PARSE_ERRORS as exc:
        raise MalformedUpdate(f"not a Telegram update: {type(exc).__name__}: {exc}") from exc
    return incoming(update)


def incoming(update: Update) -> IncomingUpdate:
    """Check the types of the fields the bot uses and keep only those."""
    update_id = update.update_id
    if not _is_int(update_id):
        raise MalformedUpdate(f"update_id is a {type(update_id).__name__}, not an integer")
    message: object = update.message
    if message is None:  # edited_message, channel_post, callback_query, ...: nothing to answer
        return IncomingUpdate(update_id)
    if not isinstance(message, Message):
        raise MalformedUpdate(f"message is a {type(message).__name__}")
    if message.text is None:  # a sticker, a photo, a service message
        return IncomingUpdate(update_id)
    text: object = message.text
    if not isinstance(text, str):
        raise MalformedUpdate(f"message.text is a {type(text).__name__}, not a string")
    chat: object = message.chat
    if not isinstance(chat, Chat):
        raise MalformedUpdate("a text message without a chat")
    if not _is_int(chat.id) or chat.id not in CHAT_ID_RANGE:
        raise MalformedUpdate(f"message.chat.id is not a 64-bit integer ({type(chat.id).__name__})")
    message_id: object = message.message_id
    if not _is_int(message_id):
        raise MalformedUpdate(f"message.message_id is a {type(message_id).__name__}, not an integer")
    chat_type: object = chat.type
    thread: object = message.message_thread_id if message.is_topic_message is True else None
    return IncomingUpdate(
        update_id,
        chat.id,
        text,
        message_id=message_id,
        chat_type=chat_type if isinstance(chat_type, str) else "private",
        thread_id=thread if _is_int(thread) else None,
        entities=_entities(message, text),
        reply_to_user_id=_reply_to_user(message),
    )


def _entities(message: Message, text: str) -> tuple[Entity, ...]:
    raw: object = message.entities
    if not isinstance(raw, tuple | list):
        raise MalformedUpdate(f"message.entities is a {type(raw).__name__}")
    units = text.encode("utf-16-le")
    found = []
    for entity in raw:
        if not isinstance(entity, MessageEntity):
            raise MalformedUpdate("an entity that is not an object")
        kind, offset, length = entity.type, entity.offset, entity.length
        if not (isinstance(kind, str) and _is_int(offset) and _is_int(length)):
            raise MalformedUpdate("an entity without an integer offset and length")
        if kind not in ENTITY_KINDS or offset < 0 or length <= 0 or 2 * (offset + length) > len(units):
            continue  # bold, links...: the bot does not look at them; out of range: Telegram never sends it
        start = len(units[: 2 * offset].decode("utf-16-le", errors="ignore"))
        end = start + len(units[2 * offset : 2 * (offset + length)].decode("utf-16-le", errors="ignore"))
        user: object = entity.user
        user_id = user.id if isinstance(user, User) and _is_int(user.id) else None
        found.append(Entity(str(kind), start, end, user_id))
    return tuple(found)


def _reply_to_user(message: Message) -> int | None:
    replied: object = message.reply_to_message
    if not isinstance(replied, Message):
        return None
    author: object = replied.from_user
    if isinstance(author, User) and _is_int(author.id):
        return author.id
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
