import pytest

from scanner.roles import classify_role

ROLES = {
    "student_domains": ["students.district.org"],
    "student_org_units": ["/Students"],
    "student_license_skus": ["STANDARDWOFFPACK_STUDENT"],
    "student_groups": ["0b9e6c2a-1111-4c2a-9d7e-000000000001"],
}


@pytest.mark.parametrize(
    "kwargs,role",
    [
        ({"email": "kid@students.district.org"}, "student"),
        ({"email": "kid@STUDENTS.district.org"}, "student"),
        ({"email": "t@district.org", "org_unit": "/Students"}, "student"),
        ({"email": "t@district.org", "org_unit": "/Students/HS/Grade 9"}, "student"),
        ({"email": "t@district.org", "org_unit": "/StudentsTeachers"}, "staff"),  # a prefix of the path, not of the text
        ({"email": "t@district.org", "license_skus": ["standardwoffpack_student"]}, "student"),
        ({"email": "t@district.org", "groups": ["0B9E6C2A-1111-4C2A-9D7E-000000000001"]}, "student"),
        ({"email": "t@district.org", "org_unit": "/Staff", "license_skus": ["STANDARDWOFFPACK_FACULTY"]}, "staff"),
    ],
)
def test_classify_role(kwargs, role):
    assert classify_role(ROLES, **kwargs) == role


def test_no_rules_means_unknown_not_staff():
    assert classify_role({}, email="anyone@district.org", org_unit="/Students") == "unknown"
