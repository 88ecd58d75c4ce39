"""Job traces: the CSV format, and exporting one from a forge's job history."""

from scaler.trace.format import COLUMNS, TraceError, TraceJob, parse_trace, read_trace, write_trace

__all__ = ["COLUMNS", "TraceError", "TraceJob", "parse_trace", "read_trace", "write_trace"]
