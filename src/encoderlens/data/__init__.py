"""Dataset readers, synthetic generators and manifests."""
