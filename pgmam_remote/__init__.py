"""pgmam: many isolated PostgreSQL apps per server, each with pgBackRest, driven over SSH."""

__version__ = "0.1.0"
