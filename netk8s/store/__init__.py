"""Object store: SQLite, etcd and an in-memory fake behind one protocol."""
