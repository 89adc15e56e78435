"""The order launch/test.sh hands test files to its workers in (conftest.slow_files_first)."""

from conftest import slow_files_first


class _Item:
  def __init__(self, path, slow=False):
    self.fspath, self.slow = path, slow

  def get_closest_marker(self, name):
    return object() if name == "slow" and self.slow else None


def test_files_with_the_most_slow_tests_go_first_each_kept_whole_and_in_order():
  items = [_Item("a.py"), _Item("a.py"), _Item("b.py", True), _Item("c.py"),
           _Item("d.py", True), _Item("d.py"), _Item("d.py", True), _Item("e.py", True)]
  got = slow_files_first(items)
  assert [i.fspath for i in got] == ["d.py"] * 3 + ["b.py", "e.py", "a.py", "a.py", "c.py"]
  assert [items.index(i) for i in got if i.fspath == "d.py"] == [4, 5, 6]  # a file's own order
  assert sorted(map(id, got)) == sorted(map(id, items))  # every test once


def test_the_suite_is_collected_in_that_order(request):
  files = list(dict.fromkeys(str(i.fspath) for i in request.session.items))
  if len(files) < 2:  # run on its own or with -k: nothing to compare
    return
  slow = [any(i.get_closest_marker("slow") for i in request.session.items
              if str(i.fspath) == f) for f in files]
  assert slow == sorted(slow, reverse=True)  # no file with slow tests after one without
