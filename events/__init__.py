"""Clinical event contracts of the consortium: models, topics, codec and publisher."""
