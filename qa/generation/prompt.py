"""The request to the language model: the question, the earlier turns and the passages numbered [1]…[k]."""

from __future__ import annotations

from collections.abc import Sequence

from qa.records import Hit

SYSTEM = (
    "你是新闻问答助手。只根据用户给出的编号新闻段落回答问题，不使用段落以外的知识。"
    "用提问所用的语言（中文、英文、越南文……）简短回答，最多三句话。"
    "每句话都以它所依据的段落编号结尾，例如“……。[1]”或“……。[1][2]”。"
    "数字、日期、人名、地名和引语必须与段落原文完全一致；段落里没有的内容不要写。\n"
    "You answer questions about news. Use only the numbered passages the user gives. Answer briefly (at "
    "most three sentences) in the language of the question. End every sentence with the markers of the "
    "passages it uses, e.g. [1] or [1][2]. Copy numbers, dates, names and quotations exactly as the "
    "passages write them; leave out anything they do not say."
)


def passage_block(number: int, hit: Hit) -> str:
    heading = f"《{hit.title}》" if hit.title else ""
    date = f"（{hit.date}）" if hit.date else ""
    teaser = f"［相关新闻预告：{hit.chunk.heading}］" if hit.chunk.heading else ""
    return f"[{number}] {heading}{date}{teaser}\n{hit.chunk.text.strip()}"


def messages(question: str, history: Sequence[str], hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The chat messages: a system message with the rules, one user message with passages and question."""
    parts = ["新闻段落 Passages:", *(passage_block(n, h) for n, h in enumerate(hits, start=1))]
    earlier = [turn.strip() for turn in history if turn.strip()]
    if earlier:
        parts += ["", "此前的问题 Earlier questions in this conversation:", *(f"- {t}" for t in earlier)]
    parts += ["", f"问题 Question: {question.strip()}"]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]
