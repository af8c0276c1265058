"""The generation runner: one answer from the model's first token to its stored end, its
database writes and its draining at shutdown."""
