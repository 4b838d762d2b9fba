"""Model files on disk: the export layout and variants, manifests and checksums, pulls from mirrors and the hub."""
