"""Servers the project runs itself: Apache Kafka (KRaft) and PostgreSQL, plus migrations."""
