"""Character confusions of Chinese name entry: homophones, look-alikes, traditional forms."""

from __future__ import annotations


def _split(text: str) -> list[str]:
    return text.split()


# Same syllable (tone aside) — what a clerk types through a pinyin input method when the
# patient only says the name (张伟/章伟). Groups, not pairs: any member may become another.
_HOMOPHONE_GROUPS = _split("""
张章彰 王汪 李黎理丽莉力立利 刘柳留 杨阳扬洋 徐许 黄皇煌 吴伍武 周舟州
陈臣晨辰 林琳霖淋 何河和禾 郭国 马玛 罗洛 梁良粮 宋送 郑正政 谢协 韩寒汉涵含
唐堂棠 冯峰锋丰风枫 于余鱼玉宇雨语 程成诚城承 曹草 袁元园圆源媛缘 邓登 彭朋鹏
吕旅 苏素 卢鲁路露 蒋江姜将 蔡才财彩 丁定 魏伟卫威薇玮炜 叶业夜 潘盼 杜度
钟中忠 田甜 方芳 石时实 姚瑶遥 谭坛 金今 晶静敬 龙隆 文雯 万婉 建健剑
华化桦 明铭鸣 红洪宏鸿虹 英瑛鹰 秀修 兰岚蓝 梅玫媚 平萍苹 燕艳雁 杰洁婕 磊蕾
涛韬 斌彬 辉晖慧惠 刚钢 勇永泳咏 霞侠 娟鹃 亮靓 军君均 强墙 敏民 婷亭庭
颖影 倩茜 雪学 欣鑫馨新心 怡仪宜 轩萱宣 浩昊皓 博波 俊骏峻 志智 春纯 玲灵
芬分 珍真贞 桂贵 凤奉 福富
""")

# Look-alike characters (形近字) confused when copying a handwritten form.
_LOOK_ALIKES = {
    "王": "玉", "玉": "王", "未": "末", "己": "已", "日": "曰", "土": "士", "大": "太",
    "天": "夫", "明": "朋", "林": "材", "辉": "挥", "杨": "扬", "清": "情", "晴": "睛",
    "俊": "浚", "峰": "锋", "娟": "涓", "婷": "亭", "建": "健", "国": "图", "秀": "季",
    "兰": "芝", "梅": "海", "春": "眷", "英": "荚", "红": "江", "凤": "风", "刘": "划",
}  # fmt: skip

# Traditional forms, as typed by relatives from Hong Kong or Taiwan, or by old systems.
_TRADITIONAL = {
    "张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "赵": "趙", "黄": "黃", "吴": "吳",
    "孙": "孫", "郑": "鄭", "谢": "謝", "韩": "韓", "冯": "馮", "邓": "鄧", "许": "許",
    "苏": "蘇", "卢": "盧", "蒋": "蔣", "叶": "葉", "钟": "鍾", "谭": "譚", "龙": "龍",
    "华": "華", "国": "國", "军": "軍", "东": "東", "兰": "蘭", "丽": "麗", "红": "紅",
    "凤": "鳳", "强": "強", "贵": "貴", "荣": "榮", "云": "雲", "飞": "飛", "庆": "慶",
    "宝": "寶", "兴": "興", "伟": "偉", "涛": "濤", "辉": "輝", "鹏": "鵬",
    "杰": "傑", "静": "靜", "艳": "艷", "刚": "剛", "纯": "純",
    "爱": "愛", "梦": "夢", "瑶": "瑤", "颖": "穎", "晓": "曉", "欢": "歡",
}  # fmt: skip

HOMOPHONES: dict[str, tuple[str, ...]] = {
    char: tuple(other for other in group if other != char)
    for group in _HOMOPHONE_GROUPS
    for char in group
    if len(group) > 1
}
LOOK_ALIKES: dict[str, str] = dict(_LOOK_ALIKES)
TRADITIONAL: dict[str, str] = dict(_TRADITIONAL)
FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")
