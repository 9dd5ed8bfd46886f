"""Local infrastructure without Docker: Apache Kafka from Maven jars, Tansu, PostgreSQL."""
