"""Speech: text to speech for prompts, recognition of spoken menu keywords."""
