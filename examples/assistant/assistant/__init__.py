"""assistant-admin: the admin API of an AI-assistant SaaS (prompts, crawls, policies, billing, support tools)."""
