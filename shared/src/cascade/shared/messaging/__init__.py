"""The event backbone: envelope, contracts registry, topics, outbox, inbox, dead letters.

Business code never imports aiokafka: it adds events to the outbox in its own
transaction and receives decoded events in a handler inside the consumer's transaction.
"""
