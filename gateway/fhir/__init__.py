"""FHIR R4 shapes of the shared record: pure mappers, paging, and the audited reads behind them."""
