"""Field shapes shared by more than one app."""

# A name used in URLs, file names and router configuration: lower-case letters, digits and
# hyphens, 1-64 characters, no leading or trailing hyphen.
SLUG_RE = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
