-- Who changed what (docs/operations.md, "Trace with history"): every write of a tenant, template,
-- unit, member or binding row is recorded with its actor and the row before and after, by the
-- same triggers that append to `change_log`, in the writer's transaction. The actor is the
-- `rolegate.actor` setting a writer sets in its transaction (`SET LOCAL rolegate.actor =
-- 'alice@example.com'`), else the database role that logged in. Rows are kept until deleted;
-- `prune_change_log` does not touch them.

CREATE TABLE rolegate.change_history (
    seq    bigserial PRIMARY KEY,
    -- The change id: the tenant revision the write made (0 when it made none).
    id     bigint NOT NULL,
    tenant text NOT NULL,
    kind   text NOT NULL CHECK (kind IN ('tenant', 'template', 'unit', 'member', 'binding')),
    -- The tenant, template, unit or member id (a binding: its member).
    key    text NOT NULL,
    op     text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    actor  text NOT NULL,
    before jsonb,
    after  jsonb,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_history_tenant ON rolegate.change_history (tenant, at);

-- The writer: `rolegate.actor` when set in this transaction or session, else the login role.
CREATE FUNCTION rolegate.actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('rolegate.actor', true), ''), session_user::text)
$$;

CREATE FUNCTION rolegate.record_history(p_tenant text, p_kind text, p_key text, p_op text, p_before jsonb, p_after jsonb)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO rolegate.change_history (id, tenant, kind, key, op, actor, before, after)
    VALUES (rolegate.revision(p_tenant), p_tenant, p_kind, p_key, lower(p_op), rolegate.actor(), p_before, p_after)
$$;

CREATE OR REPLACE FUNCTION rolegate.tenant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM rolegate.log_change(OLD.id, 'tenant', OLD.id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        -- Wait for a concurrent change of the template, so its fan-out cannot miss this tenant.
        PERFORM 1 FROM rolegate.templates WHERE name = NEW.template FOR SHARE;
        IF TG_OP = 'INSERT' OR NEW.id <> OLD.id THEN
            PERFORM rolegate.log_change(NEW.id, 'tenant', NEW.id);
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM rolegate.record_history(OLD.id, 'tenant', OLD.id, TG_OP, to_jsonb(OLD), NULL);
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM rolegate.record_history(NEW.id, 'tenant', NEW.id, TG_OP, NULL, to_jsonb(NEW));
    ELSIF to_jsonb(OLD) IS DISTINCT FROM to_jsonb(NEW) THEN
        PERFORM rolegate.record_history(NEW.id, 'tenant', NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION rolegate.template_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT id, template FROM rolegate.tenants
        WHERE template IN (CASE WHEN TG_OP <> 'INSERT' THEN OLD.name END, CASE WHEN TG_OP <> 'DELETE' THEN NEW.name END)
        ORDER BY id
    LOOP
        PERFORM rolegate.log_change(t.id, 'template', t.template);
        -- Recorded under every tenant the template reaches, so a tenant's history shows it.
        PERFORM rolegate.record_history(
            t.id, 'template', t.template, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION rolegate.row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
        PERFORM rolegate.log_change(old_row ->> 'tenant', TG_ARGV[0], old_row ->> TG_ARGV[1]);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
        IF old_row IS NULL
            OR (old_row ->> 'tenant', old_row ->> TG_ARGV[1]) IS DISTINCT FROM (new_row ->> 'tenant', new_row ->> TG_ARGV[1])
        THEN
            PERFORM rolegate.log_change(new_row ->> 'tenant', TG_ARGV[0], new_row ->> TG_ARGV[1]);
        END IF;
    END IF;
    IF old_row IS DISTINCT FROM new_row THEN
        PERFORM rolegate.record_history(
            coalesce(new_row ->> 'tenant', old_row ->> 'tenant'), TG_ARGV[0],
            coalesce(new_row ->> TG_ARGV[1], old_row ->> TG_ARGV[1]), TG_OP, old_row, new_row);
    END IF;
    RETURN NULL;
END $$;
