-- Workload generators for bench/bench.py. Every procedure commits as it goes, so the slot sees
-- many transactions (except bench_big_tx, which is one transaction on purpose).

-- Table shape shared by the insert-only, mixed and big-transaction workloads (~110 bytes/row).
CREATE OR REPLACE PROCEDURE bench_create_narrow(tbl text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY, customer_id int NOT NULL,
        amount numeric(12,2), status text, note text, created_at timestamptz)', tbl);
END $$;

-- 50 columns: id plus 49 columns cycling through int, bigint, text, numeric, float8,
-- timestamptz and boolean.
CREATE OR REPLACE PROCEDURE bench_create_wide(tbl text) LANGUAGE plpgsql AS $$
DECLARE
    types text[] := ARRAY['int', 'bigint', 'text', 'numeric(12,2)', 'double precision',
                          'timestamptz', 'boolean'];
    cols text := '';
BEGIN
    FOR i IN 1..49 LOOP
        cols := cols || format(', c%s %s', i, types[1 + (i - 1) % 7]);
    END LOOP;
    EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY%s)', tbl, cols);
END $$;

CREATE OR REPLACE FUNCTION bench_wide_values() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    exprs text[] := ARRAY['(g % 100000)::int', 'g * 7', 'md5(g::text)', '(g % 100000) / 100.0',
                          'g / 3.0', 'now()', '(g % 2 = 0)'];
    vals text := 'g';
BEGIN
    FOR i IN 1..49 LOOP
        vals := vals || ', ' || exprs[1 + (i - 1) % 7];
    END LOOP;
    RETURN vals;
END $$;

-- Inserts ids 1..total, per_tx rows per transaction.
CREATE OR REPLACE PROCEDURE bench_insert(tbl text, total bigint, per_tx int, wide boolean)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint := 0;
    vals text := CASE WHEN wide THEN bench_wide_values() ELSE
        'g, (g % 1000)::int, (g % 100000) / 100.0, (ARRAY[''new'',''paid'',''shipped''])[1 + g % 3], md5(g::text), now()' END;
    stmt text := format('INSERT INTO %I SELECT %s FROM generate_series($1, $2) g', tbl, vals);
BEGIN
    WHILE i < total LOOP
        EXECUTE stmt USING i + 1, least(i + per_tx, total);
        COMMIT;
        i := i + per_tx;
    END LOOP;
END $$;

-- 70/20/10 inserts/updates/deletes: step 0 inserts 700 rows; every later step k inserts 700
-- new rows, updates 200 and deletes 100 of step k-1's rows, in one transaction of 1000 changes.
CREATE OR REPLACE PROCEDURE bench_mixed(tbl text, steps int) LANGUAGE plpgsql AS $$
DECLARE
    ins text := format('INSERT INTO %I SELECT g, (g %% 1000)::int, (g %% 100000) / 100.0, ''new'', md5(g::text), now() FROM generate_series($1, $2) g', tbl);
    upd text := format('UPDATE %I SET status = ''paid'', amount = amount + 1 WHERE id BETWEEN $1 AND $2', tbl);
    del text := format('DELETE FROM %I WHERE id BETWEEN $1 AND $2', tbl);
    base bigint;
BEGIN
    FOR k IN 0..steps - 1 LOOP
        base := k::bigint * 700;
        EXECUTE ins USING base + 1, base + 700;
        IF k > 0 THEN
            EXECUTE upd USING base - 699, base - 500;
            EXECUTE del USING base - 99, base;
        END IF;
        COMMIT;
    END LOOP;
END $$;
