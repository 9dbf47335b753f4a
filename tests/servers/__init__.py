"""Real servers the tests start on free loopback ports: moto_server (S3), fake-gcs-server
(GCS), our Dropbox API v2 server, and a fault-injecting HTTP proxy."""
