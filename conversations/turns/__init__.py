"""What a question changes: the turns of a conversation (actions), its message tree
(threads), its title, and which backend and model answer it (catalog)."""
