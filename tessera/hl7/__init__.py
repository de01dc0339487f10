"""HL7 v2: a small message codec and MLLP framing, shared by the workflow features (results
out as ORU^R01 today; orders and identity feeds extend it)."""
