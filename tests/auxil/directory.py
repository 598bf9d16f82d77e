"""A small directory used across tests, written as CSV like an admin would."""

from __future__ import annotations

from pathlib import Path

AREAS = """code,name,parent_code,level
TH,Tỉnh Thanh Hóa,,tỉnh
QH,Huyện Quan Hóa,TH,huyện
HX,Xã Hồi Xuân,QH,xã
PL,Xã Phú Lệ,QH,xã
BT,Huyện Bá Thước,TH,huyện
"""
SCHOOLS = """code,name,area_code,level,address
THCS-HX,Trường THCS Hồi Xuân,HX,THCS,Bản Khằm
TH-PL,Trường Tiểu học Phú Lệ,PL,tiểu học,
"""
OFFICERS = """name,phone,area_code,duty
Lê Văn An,0912345678,HX,primary
Trần Văn Bảo,0912000111,HX,backup
Phạm Thị Bình,0987654321,QH,chief
Hà Văn Cường,0913000222,BT,primary
"""
LIAISONS = """name,phone,school_code
Nguyễn Thị Hoa,0901234567,THCS-HX
Đỗ Minh Châu,0908888999,TH-PL
"""


def write_directory(folder: Path) -> list[Path]:
    """Write the four CSV files (areas with a BOM, as Excel saves) and return their paths."""
    paths = []
    for name, text in (("areas", AREAS), ("schools", SCHOOLS), ("officers", OFFICERS),
                       ("liaisons", LIAISONS)):
        path = folder / f"{name}.csv"
        data = text.encode("utf-8")
        path.write_bytes(b"\xef\xbb\xbf" + data if name == "areas" else data)
        paths.append(path)
    return paths
