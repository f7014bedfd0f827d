"""Tests against real Redis, PostgreSQL, git, sshd and moto servers started on 127.0.0.1."""
