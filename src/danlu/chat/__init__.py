"""Chat: what a row becomes (messages.py: Conversation, Preference … and RowError), chat templates
(templates.py + templates/*.jinja, with each template's turn-end token) and tool calls (tools.py) —
used by data, serve, infer, eval and export."""
