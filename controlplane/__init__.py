"""The aibridge controlplane: owns the database, serves the admin API and the snapshot stream."""
