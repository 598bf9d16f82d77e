"""Domain services: cases, escalation, campaigns, content, the directory and invitations."""
