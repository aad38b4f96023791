"""steprun's built-in step packs: ``core`` (no network) and ``openai`` (fine-tuning)."""

__all__: list[str] = []
