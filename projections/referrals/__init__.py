"""Two-way referrals (双向转诊): the state machine, its board in PostgreSQL and its queries."""
