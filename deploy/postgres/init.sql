-- Cascade, local stack only: one database and one login role per service
-- (database per service: accounts, cases, notifications, legal).
--
-- The postgres image runs this once, as the superuser, when its data directory is empty
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/). Passwords are read from
-- the container's environment with psql's \getenv, so none is written here:
--   ACCOUNTS_DB_PASSWORD, CASES_DB_PASSWORD, NOTIFICATIONS_DB_PASSWORD, LEGAL_DB_PASSWORD
-- Changing them later has no effect on an existing volume: `docker compose down -v` to re-run.
-- In production the bank's DBAs provision roles and databases; this file is not used there.

\set ON_ERROR_STOP on

\getenv accounts_password ACCOUNTS_DB_PASSWORD
\getenv cases_password CASES_DB_PASSWORD
\getenv notifications_password NOTIFICATIONS_DB_PASSWORD
\getenv legal_password LEGAL_DB_PASSWORD

SELECT :{?accounts_password} AND :{?cases_password}
   AND :{?notifications_password} AND :{?legal_password} AS passwords_set \gset
\if :passwords_set
\else
  DO $$ BEGIN RAISE EXCEPTION 'init.sql: set ACCOUNTS_DB_PASSWORD, CASES_DB_PASSWORD, NOTIFICATIONS_DB_PASSWORD and LEGAL_DB_PASSWORD'; END $$;
\endif

-- Each role owns its database (it runs its service's migrations) and no other role may
-- connect to it: REVOKE takes CONNECT and TEMPORARY away from PUBLIC.
CREATE ROLE accounts LOGIN PASSWORD :'accounts_password';
CREATE DATABASE accounts OWNER accounts;
REVOKE ALL ON DATABASE accounts FROM PUBLIC;

CREATE ROLE cases LOGIN PASSWORD :'cases_password';
CREATE DATABASE cases OWNER cases;
REVOKE ALL ON DATABASE cases FROM PUBLIC;

CREATE ROLE notifications LOGIN PASSWORD :'notifications_password';
CREATE DATABASE notifications OWNER notifications;
REVOKE ALL ON DATABASE notifications FROM PUBLIC;

CREATE ROLE legal LOGIN PASSWORD :'legal_password';
CREATE DATABASE legal OWNER legal;
REVOKE ALL ON DATABASE legal FROM PUBLIC;
