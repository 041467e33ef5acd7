"""The breaks of the privacy guarantees (erasure, the key ring, siv, masked extra fields),
applied by `scripts/sabotage.py` as those of `sabotage_breaks.py` are: data in the same form."""

from __future__ import annotations

from sabotage_breaks import Break

ERASED = "An erased row stays erased when its message is delivered or replayed again."
REKEY = (
    "`rekey` leaves every row under exactly one valid key, even killed with `kill -9`, and runs "
    "safely beside `run`."
)
SIV_MODE = (
    "`LOGINETL_MASK_MODE=siv` stores recoverable masks (AES-SIV), never one-way ones, and "
    "`unmask` reads a row only under the key its key id names."
)
RING_SEARCH = (
    "`lookup` and `erase` find a person's rows under every key of the ring, in either mode."
)
UNSEARCHED = (
    "`lookup` and `erase` never report a person's rows gone while rows they could not search "
    "remain: rows under key ids the ring lacks are counted by key id, and `erase` exits 1."
)
UNSEARCHED_TESTS = (
    "tests/test_unsearched_keys.py::"
    "test_lookup_says_how_many_rows_it_could_not_search_and_under_which_key_ids",
    "tests/test_unsearched_keys.py::test_erase_exits_1_naming_the_key_ids_it_could_not_search",
)
REKEY_ALL = "`rekey` moves every siv row under a retired key of the ring to the primary key."
MASK_EXTRA = (
    "Fields named in `LOGINETL_MASK_EXTRA` are never stored raw by `run --keep-extra`, and "
    "`verify-masking` fails when they are."
)
KEEP_EXTRA = "tests/test_keep_extra_privacy.py::"
MASK_EXTRA_TESTS = (
    KEEP_EXTRA + "test_named_fields_are_stored_masked_and_every_check_passes",
    KEEP_EXTRA + "test_a_named_field_stored_raw_fails_by_field_name_never_by_value",
    KEEP_EXTRA + "test_raw_messages_catch_a_named_field_stored_raw_or_unkeyed",
)
PRIVACY = "tests/test_cli_privacy.py::"
MODE_TEST = "tests/unit/test_key_ring.py::test_each_mode_masks_as_its_primitive_does"
UNMASK_TEST = PRIVACY + "test_unmask_recovers_siv_rows_and_refuses_one_way_and_unknown_keys"
UNMASK_KEY_TEST = (
    PRIVACY + "test_unmask_reads_a_row_under_the_key_it_names_whatever_else_the_ring_holds"
)
LOOKUP_TEST = PRIVACY + "test_lookup_finds_a_persons_rows_under_every_key_and_mode_newest_first"
LOOKUP_EXTRA_TEST = (
    "tests/test_keep_extra_privacy.py::"
    "test_lookup_and_erase_find_a_person_by_an_extra_field_under_every_key_and_mode"
)
REKEY_TEST = PRIVACY + "test_rekey_moves_siv_rows_to_the_primary_and_a_second_run_does_nothing"
ERASE_TEST = (
    "tests/test_cli_privacy.py::"
    "test_erase_counts_then_deletes_and_a_replay_does_not_bring_rows_back"
)
ERASE_RACE_TEST = (
    "tests/test_erase_race.py::test_a_load_racing_an_open_erase_never_brings_the_row_back"
)
REKEY_KILL_TEST = (
    "tests/test_rekey_faults.py::"
    "test_rekey_killed_mid_way_leaves_every_row_valid_and_the_next_one_finishes"
)
REKEY_WHILE_RUN_TEST = "tests/test_rekey_faults.py::test_rekey_while_run_loads"


BREAKS: tuple[Break, ...] = (
    Break(
        ERASED,
        "the loader ignores user_logins_erased: a replayed erased message is loaded again",
        "load.py",
        "    return table.has_erased_ids and not table.partitioned\n",
        "    return False  # SABOTAGE: erased ids neither skipped nor re-checked\n",
        (ERASE_TEST,),
    ),
    Break(
        ERASED,
        "a load racing an open erase inserts the row again: no re-check after the insert",
        "load.py",
        "            if not (_erasable(table) and _erased_among(connection, result.inserted)):\n",
        "            if True:  # SABOTAGE: no re-check of erased ids after the insert\n",
        (ERASE_RACE_TEST,),
    ),
    Break(
        REKEY,
        "rekey rewrites the masks but leaves the old key id on the row",
        "privacy/recovery.py",
        '"mask_key_id = v.new_key{',
        '"mask_key_id = v.old_key{',
        (REKEY_KILL_TEST,),
    ),
    Break(
        REKEY,
        "run masks new rows under a retired key of the ring, not the primary",
        "cli/run.py",
        "    key = mask_key_from_env()\n",
        "    from ..masking import key_ring_from_env  # SABOTAGE: new rows under a retired key\n\n"
        "    key = (key_ring_from_env().retired or (mask_key_from_env(),))[0]\n",
        (REKEY_WHILE_RUN_TEST,),
    ),
    Break(
        SIV_MODE,
        "siv silently downgraded to hmac: new masks one-way whatever the mode",
        "masking.py",
        "        return self.siv_mask(value) if self.mode == SIV else self.hmac_mask(value)\n",
        "        return self.hmac_mask(value)  # SABOTAGE: siv never used\n",
        (MODE_TEST, UNMASK_TEST),
    ),
    Break(
        SIV_MODE,
        "unmask answers under a retired key that did not mask the row",
        "privacy/recovery.py",
        "    key = ring.get(key_id)\n    if key is None:\n",
        "    key = ring.get(key_id) or (ring.retired or (ring.primary,))[0]  # SABOTAGE\n"
        "    if key is None:\n",
        (UNMASK_TEST, UNMASK_KEY_TEST),
    ),
    Break(
        SIV_MODE,
        "unmask reads a row under whichever retired key decrypts it, whatever key id it names",
        "privacy/recovery.py",
        "    key = ring.get(key_id)\n    if key is None:\n",
        "    key = ring.get(key_id)\n"
        "    for other in ring.retired:  # SABOTAGE: the row's key id overruled\n"
        "        try:\n"
        "            other.unmask(masked_ip)\n"
        "            key = other\n"
        "        except CannotUnmask:\n"
        "            pass\n"
        "    if key is None:\n",
        (UNMASK_TEST, UNMASK_KEY_TEST),
    ),
    Break(
        RING_SEARCH,
        "lookup and erase search the primary key's masks only (both modes)",
        "privacy/people.py",
        '        given = [name for name in ("ip", "device_id", "user_id", "extra") if getattr(self, name)]\n',
        "        ring = KeyRing(ring.primary)  # SABOTAGE: the retired keys not searched\n"
        '        given = [name for name in ("ip", "device_id", "user_id", "extra") if getattr(self, name)]\n',
        (LOOKUP_TEST, LOOKUP_EXTRA_TEST),
    ),
    Break(
        REKEY_ALL,
        "rekey skips its first batch: those rows stay under the retired key",
        "privacy/recovery.py",
        "        psycopg2.extras.execute_values(cursor, statements.update, updates, "
        "page_size=len(found))\n",
        "        if report.batches == 0:  # SABOTAGE: the first batch skipped\n"
        "            failed += [update[0] for update in updates]\n"
        "        else:\n"
        "            psycopg2.extras.execute_values(\n"
        "                cursor, statements.update, updates, page_size=len(found)\n"
        "            )\n",
        (REKEY_TEST,),
    ),
    Break(
        MASK_EXTRA,
        "kept_extra skips the mask: the named extra fields are stored as sent",
        "transform.py",
        "        texts = texts_to_mask(document, masked)\n",
        "        texts = {}  # SABOTAGE: the named extra fields never masked\n",
        MASK_EXTRA_TESTS,
    ),
    Break(
        MASK_EXTRA,
        "verify-masking takes any string or number in a named extra field for a mask",
        "audit/table.py",
        "\"(jsonb_typeof({}) NOT IN ('null', 'string') OR {} !~ {})\"",
        "\"(jsonb_typeof({}) = 'object' AND {} !~ {})\"",  # the SABOTAGE: strings pass
        MASK_EXTRA_TESTS,
    ),
    Break(
        ERASED,
        "erase deletes the rows but does not record their message ids",
        "privacy/people.py",
        "                cursor.execute(\n"
        '                    f"INSERT INTO {schema.ERASED_IDS} (sqs_message_id) "\n',
        "                cursor.execute(  # SABOTAGE: the erased ids not recorded\n"
        '                    "SELECT %s::text[]" or f"INSERT INTO {schema.ERASED_IDS} "\n',
        (ERASE_TEST,),
    ),
    Break(
        UNSEARCHED,
        "lookup and erase search without counting the rows under key ids the ring lacks",
        "privacy/people.py",
        "    if person.user_id:\n        return Unsearched()\n",
        "    if True:  # SABOTAGE: rows under unknown key ids not counted\n"
        "        return Unsearched()\n",
        UNSEARCHED_TESTS,
    ),
)
