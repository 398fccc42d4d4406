"""What every process of the messenger runs on, beside its configuration (`config/`): the Faust
app shared by both workers, garbage-collector tuning, and the one retry policy of every process (`runtime.retry`)."""
