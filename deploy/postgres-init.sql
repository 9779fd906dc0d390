-- Run once by the postgres image on a new volume, as the superuser.
-- tenantd_owner runs migrations and owns the tables. tenantd_app is the
-- runtime role; the first migration would create it without a password, so
-- it is created here with one (the migration keeps an existing role).
CREATE ROLE tenantd_owner LOGIN CREATEROLE PASSWORD 'tenantd_owner';
CREATE ROLE tenantd_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'tenantd_app';
CREATE DATABASE tenantd OWNER tenantd_owner;
