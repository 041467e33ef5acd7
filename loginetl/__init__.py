"""loginetl: login events from SQS into PostgreSQL, with ip and device_id masked."""

__version__ = "0.1.0"
