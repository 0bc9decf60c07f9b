"""danlu plan: peak memory, time and cost of a run before it starts; the settings that fit a GPU; danlu sweep."""
