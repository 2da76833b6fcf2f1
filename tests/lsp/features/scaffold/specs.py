"""Form specs the scaffold tests render: every field type, Chinese labels, choices, awkward text."""

EVERY_TYPE = {
    "title": "Every field type", "entity": "sample",
    "fields": [
        {"name": "title", "label": "Title", "type": "text", "required": True, "unique": True, "min_length": 2,
         "max_length": 40},
        {"name": "body", "label": "Body", "type": "long_text", "max_length": 500},
        {"name": "quantity", "label": "Quantity", "type": "integer", "required": True, "min": 1, "max": 99},
        {"name": "price", "label": "Price", "type": "decimal", "min": 0, "max": 1000.5},
        {"name": "due", "label": "Due date", "type": "date", "required": True},
        {"name": "starts_at", "label": "Starts at", "type": "datetime"},
        {"name": "size", "label": "Size", "type": "choice", "required": True, "choices": ["S", "M", "L"]},
        {"name": "urgent", "label": "Urgent", "type": "boolean"},
        {"name": "contact_email", "label": "Email", "type": "email", "required": True, "unique": True},
        {"name": "contact_phone", "label": "Phone", "type": "phone", "min_length": 5, "max_length": 20},
    ],
}

REPAIRS_ZH = {
    "title": "设备维修记录", "entity": "repair_record",
    "fields": [
        {"name": "repair_date", "label": "日期", "type": "date", "required": True},
        {"name": "code", "label": "编号", "type": "text", "required": True, "unique": True, "max_length": 30},
        {"name": "fault_type", "label": "故障类型", "type": "choice", "required": True,
         "choices": ["电气故障", "机械故障", "软件故障", "其他"]},
        {"name": "handler", "label": "处理人", "type": "text", "required": True},
        {"name": "notes", "label": "备注", "type": "long_text", "help": "可选: 处理过程"},
    ],
}

# Labels and choices with quotes, backslashes, markup and SQL: they must come out as data, never code.
AWKWARD = {
    "title": "Quotes \"', <b>markup</b> & \\ backslashes", "entity": "awkward",
    "fields": [
        {"label": "Class", "name": "class", "type": "text", "required": True},
        {"label": "Choice '); DROP TABLE awkward; --", "name": "choice", "type": "choice", "required": True,
         "choices": ["it's", "say \"hi\"", "<script>alert(1)</script>", "back\\slash", "a|b"]},
        {"label": "\"\"\" triple", "name": "1st", "type": "integer", "required": False},
        {"label": "故障类型", "type": "text"},
    ],
}

ALL = {"every_type": EVERY_TYPE, "repairs_zh": REPAIRS_ZH, "awkward": AWKWARD}
