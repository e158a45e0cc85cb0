"""HL7 v2 in: ER7 messages (HTTP or MLLP) mapped to events, answered with an HL7 ACK."""
