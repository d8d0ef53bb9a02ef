"""The fingerprint against what could make it lie: it moves with every value that shapes a host
(a vaulted secret's plaintext included) and stays put for the same desired state written differently."""

import hypothesis.strategies as st
from ansible.parsing.vault import EncryptedString, VaultLib, VaultSecret, VaultSecretsContext
from hypothesis import given, settings

from ansible_collections.edgeml.fleet.plugins.lookup.converge_fingerprint import INVENTORY_VARIABLES, role_options

from test_converge_fingerprint import fingerprint

SECRET = VaultSecret(b"vault password")


def vaulted(text):
    if VaultSecretsContext.current(optional=True) is None:
        VaultSecretsContext.initialize(VaultSecretsContext(secrets=[("default", SECRET)]))
    return EncryptedString(ciphertext=VaultLib([("default", SECRET)]).encrypt(text, SECRET).decode())


def test_a_vaulted_value_counts_by_its_plaintext_and_each_encryption_gives_the_same_fingerprint():
    once, again = vaulted("token-1"), vaulted("token-1")  # different ciphertexts, random salt
    assert fingerprint(inference_runtime_token=once) == fingerprint(inference_runtime_token=again)
    assert fingerprint(inference_runtime_token=once) == fingerprint(inference_runtime_token="token-1")
    assert fingerprint(inference_runtime_token=once) != fingerprint(inference_runtime_token=vaulted("token-2"))


def test_mapping_order_does_not_move_it_list_order_does():
    one = [{"name": "fraud", "ref": "models/fraud:1", "golden": {"a": 1, "b": 2}}]
    other = [{"golden": {"b": 2, "a": 1}, "ref": "models/fraud:1", "name": "fraud"}]
    assert fingerprint(edgeml_models=one) == fingerprint(edgeml_models=other)
    two = [{"name": "a", "ref": "m/a:1"}, {"name": "b", "ref": "m/b:1"}]
    assert fingerprint(edgeml_models=two) != fingerprint(edgeml_models=two[::-1])  # safe side: a full walk


def test_the_account_the_roles_make_is_part_of_it():
    assert {"edgeml_user", "edgeml_group", "edgeml_state_dir"} <= role_options()
    assert fingerprint(edgeml_user="svc") != fingerprint()
    assert fingerprint(edgeml_group="svc") != fingerprint()


SHAPING = sorted(role_options() | set(INVENTORY_VARIABLES))
SCALARS = st.one_of(st.integers(), st.text(max_size=6), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHAPING), VALUES, VALUES)
def test_any_two_values_of_a_variable_that_shapes_a_host_give_two_fingerprints(name, one, other):
    if one == other and type(one) is type(other):
        return
    if repr(one) == repr(other):  # 1 == True and 1.0 == 1 aside, distinct YAML values
        return
    assert fingerprint(**{name: one}) != fingerprint(**{name: other})
