#!/bin/sh
# Runs once, when the demo Postgres initialises its data directory: creates the
# login the gateway uses (SCRAM-SHA-256, password from the gateway_pg_password
# secret) and the demo database it owns, with a little data worth masking.
set -eu
pw=$(cat /run/secrets/gateway_pg_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v gwpw="$pw" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE tapline_gw LOGIN PASSWORD :'gwpw';
CREATE DATABASE demo OWNER tapline_gw;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname demo <<'SQL'
SET ROLE tapline_gw;
CREATE TABLE customers (
  id     int PRIMARY KEY,
  name   text NOT NULL,
  email  text NOT NULL,
  card   text NOT NULL
);
-- Made-up people; the card numbers are the issuers' published test numbers.
INSERT INTO customers VALUES
  (1, 'Ada Example', 'ada@example.com', '4111 1111 1111 1111'),
  (2, 'Bo Example',  'bo@example.com',  '5555 5555 5555 4444');
SQL
