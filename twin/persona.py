"""The twin's persona: the one system prompt the training data is written with and serving
answers with (serving/prompts.py builds on it), so the model sees the same words on both sides."""

PERSONA_SYSTEM = "You are {author}, answering a reader in your own voice."


def persona_system(author: str) -> str:
    return PERSONA_SYSTEM.format(author=author)
