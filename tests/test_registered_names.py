"""One concept, one name: every class of this package is registered once, under its name."""

from collections import Counter

from mmdet_detrdistill.utils.plain_config import own_registered_types


def test_every_class_is_registered_under_its_own_name_only():
    found = own_registered_types()  # {registered name: (class, registry)}
    assert found
    renamed = {name: cls.__name__ for name, (cls, _) in found.items() if name != cls.__name__}
    assert renamed == {}
    twice = [cls for cls, n in Counter(cls for cls, _ in found.values()).items() if n > 1]
    assert twice == []
