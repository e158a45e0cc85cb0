"""The processing frame every projection uses: declaration, batches, generations, digests."""
