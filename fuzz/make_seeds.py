#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ and fuzz/dicts/<target>.dict from the protocol sheet's examples
(/work/shared/rbm-protocol.md §1, §3, §5) and the unit tests' examples in src/core/.
Re-run after changing it: `python3 fuzz/make_seeds.py` (the output is committed)."""
import base64, hashlib, hmac, json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

COMMON = '"agentId":"AGENT_ID","senderPhoneNumber":"+12223334444","messageId":"MSG_ID","sendTime":"2018-12-31T15:01:23.045123456Z"'
EVENTS = [
    # §3 user messages
    '{%s,"text":"Hello, world!"}' % COMMON,
    '{%s,"suggestionResponse":{"postbackData":"suggestion_1","text":"Suggestion #1","type":"REPLY"}}' % COMMON,
    '{%s,"location":{"latitude":37.422,"longitude":-122.084056}}' % COMMON,
    '{%s,"userFile":{"thumbnail":{"mimeType":"image/jpeg","fileSizeBytes":1280,"fileUri":"https://x/t","fileName":"a.jpeg"},"payload":{"mimeType":"image/gif","fileSizeBytes":127806,"fileUri":"https://x/p","fileName":"a.gif"}}}' % COMMON,
    '{%s,"userFile":{"payload":{"fileSizeBytes":127806,"fileUri":"https://x/p"}}}' % COMMON,
    '{%s,"text":"hi","richMessageClassification":{"x":1},"carrier":"c"}' % COMMON,
    # §3 user events
    *['{%s,"eventId":"EVENT_ID","eventType":"%s"}' % (COMMON, t) for t in ["DELIVERED", "READ", "IS_TYPING", "SUBSCRIBE", "UNSUBSCRIBE"]],
    '{"senderPhoneNumber":"+1","eventType":"IS_TYPING","eventId":"E"}',
    '{"senderPhoneNumber":"+1","eventType":"REACTION","reaction":"\\ud83d\\udc4d"}',
    # §3 server events
    *['{"phoneNumber":"+12223334444","agentId":"AGENT_ID","messageId":"MSG_ID","eventId":"EVENT_ID","eventType":"%s","sendTime":"2018-12-31T15:01:23.045123456Z"}' % t
      for t in ["TTL_EXPIRATION_REVOKED", "TTL_EXPIRATION_REVOKE_FAILED"]],
    '{"phoneNumber":"+1","eventType":"SOME_NEW_SERVER_EVENT","future":{"x":[1,2]}}',
    # unknown kinds and odd shapes
    '{%s,"sticker":{"id":"s1"}}' % COMMON,
    '{"a":1}',
    ' \n{"x":1} ',
    '{"senderPhoneNumber":"+1","messageId":"m","eventId":"E1","eventType":"READ","sendTime":"2018-12-31T15:01:23+01:00"}',
    # not understood (unit tests)
    'not json', '[1,2]', '"str"', '12', '{"text":5}', '{"eventType":["READ"]}',
]
# regression: a receipt whose ids make bounded() metadata over KV's 1024 bytes once escaped
KV_META_EVENT = json.dumps({"senderPhoneNumber": '"' * 200, "agentId": "\\" * 200, "messageId": "m1",
                            "eventId": "\u0001" * 200, "eventType": "DELIVERED"})

ENVELOPE_EXTRAS = [
    '{"clientToken":"SJENCPGJESMGUFPY","secret":"1234567890"}',
    '{"message":{"data":"eyJhIjoxfQ=="}}',
    '{"message":{"data":"eyJhIjoxfQ","messageId":"136969346945","publishTime":"2018-12-31T15:01:23.045Z","attributes":{"k":"v"},"x":1},"subscription":"projects/p/subscriptions/s","extra":true}',
    '{"message":{"data":"eyJhIjoxfQ==","message_id":"9"}}',
    '', '{', '[]', '{}', '{"message":{}}', '{"message":{"data":5}}', '{"message":"x"}',
    '{"clientToken":"a"}', '{"clientToken":"a","secret":1}', '{"message":{"data":"%%%"}}',
    '{"message":{"data":"eyJhIjoxfQ=?"}}', '{"message":{"data":"ab-_"}}',
]

def envelope(event, i):
    data = base64.b64encode(event.encode()).decode()
    if i % 3 == 1:
        data = data.rstrip("=")
    msg = {"data": data}
    if i % 2:
        msg.update({"messageId": str(136969346945 + i), "publishTime": "2018-12-31T15:01:23.045Z"})
    return json.dumps({"message": msg, "subscription": "projects/p/subscriptions/s"}, separators=(",", ":"))

PHONE = "+12223334444"
UUID = "123e4567-e89b-12d3-a456-426614174000"
MESSAGES = [
    # §5
    '{"contentMessage":{"text":"Hello, world!","suggestions":[{"reply":{"text":"Yes","postbackData":"yes"}}]},"messageTrafficType":"TRANSACTION","ttl":"86400s"}',
    # Google's "Send messages" guide (validate.rs tests)
    '''{"contentMessage": {"text": "Hello, here are some suggested actions and replies.", "suggestions": [
      {"reply": {"text": "Suggestion #1", "postbackData": "suggestion_1"}},
      {"action": {"text": "Call", "postbackData": "postback_data_1234", "fallbackUrl": "https://www.google.com/contact/", "dialAction": {"phoneNumber": "+15556667777"}}},
      {"action": {"text": "Open Google", "postbackData": "postback_data_1234", "openUrlAction": {"url": "https://www.google.com"}}},
      {"action": {"text": "Open in webview", "postbackData": "postback_data_1234", "openUrlAction": {"url": "https://www.google.com", "application": "WEBVIEW", "webviewViewMode": "FULL", "description": "Accessibility text"}}},
      {"action": {"text": "Share your location", "postbackData": "postback_data_1234", "shareLocationAction": {}}},
      {"action": {"text": "View map", "postbackData": "postback_data_1234", "fallbackUrl": "https://www.google.com/maps/@37.4220188,-122.0844786,15z", "viewLocationAction": {"latLong": {"latitude": 37.4220188, "longitude": -122.0844786}, "label": "Googleplex"}}},
      {"action": {"text": "Find on map", "postbackData": "postback_data_1234", "viewLocationAction": {"query": "Googleplex, Mountain View, CA"}}},
      {"action": {"text": "Save to calendar", "postbackData": "postback_data_1234", "fallbackUrl": "https://www.google.com/calendar", "createCalendarEventAction": {"startTime": "2020-06-30T19:00:00Z", "endTime": "2020-06-30T20:00:00Z", "title": "My calendar event", "description": "Description of the calendar event"}}},
      {"action": {"text": "Chat", "postbackData": "postback_data_1234", "composeAction": {"composeTextMessage": {"phoneNumber": "+15556667777", "text": "Draft to go into the send message text field."}}}}
    ]}, "messageTrafficType": "PROMOTION"}''',
    '''{"contentMessage": {"richCard": {"standaloneCard": {"thumbnailImageAlignment": "RIGHT", "cardOrientation": "VERTICAL",
      "cardContent": {"title": "Hello, world!", "description": "RBM is awesome!", "media": {"height": "TALL", "contentInfo": {
        "fileUrl": "https://www.google.com/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png", "forceRefresh": "false"}},
      "suggestions": [{"reply": {"text": "Suggestion #1", "postbackData": "suggestion_1"}}, {"reply": {"text": "Suggestion #2", "postbackData": "suggestion_2"}}]}}}}}''',
    '''{"contentMessage": {"richCard": {"carouselCard": {"cardWidth": "MEDIUM", "cardContents": [
      {"title": "Card #1", "description": "The description for card #1", "suggestions": [{"reply": {"text": "Card #1", "postbackData": "card_1"}}],
       "media": {"height": "MEDIUM", "contentInfo": {"fileUrl": "https://example.com/a.png", "forceRefresh": false}}},
      {"title": "Card #2", "description": "The description for card #2", "suggestions": [{"reply": {"text": "Card #2", "postbackData": "card_2"}}],
       "media": {"height": "MEDIUM", "uploadedRbmFile": {"fileName": "files/abc", "thumbnailName": "files/def"}}}
    ]}}}, "messageTrafficType": "PROMOTION", "expireTime": "2026-11-25T10:00:00Z"}''',
    '{"contentMessage": {"contentInfo": {"fileUrl": "https://www.google.com/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png", "thumbnailUrl": "https://example.com/thumb.png", "forceRefresh": "false"}}}',
    '{"contentMessage": {"uploadedRbmFile": {"fileName": "files/xyz123", "thumbnailName": "files/xyz124"}, "suggestions": [{"reply": {"text": "Nice", "postbackData": "nice"}}]}, "messageTrafficType": "TRANSACTION"}',
    '{"contentMessage": {"text": "Hi", "futureField": {"a": [1, 2.5, null, true]}}, "richMessageClassification": {"useCaseType": "X"}, "somethingNew": 12345678901234567890, "messageTrafficType": "MESSAGE_TRAFFIC_TYPE_UNSPECIFIED"}',
    '{"contentMessage": {"text": "Hi", "suggestions": [{"action": {"text": "Go", "postbackData": "go", "payAction": {"amount": "1"}}}]}}',
    '{"contentMessage": {"text": "Hi"}, "expireTime": "2026-11-25T10:00:00.5+05:30", "ttl": null}',
    '{"contentMessage": {"text": "Hi"}, "ttl": "1295999.999999999s"}',
]

def with_ours(message, full):
    m = json.loads(message)
    m["phoneNumber"] = PHONE
    if full:
        m.update({"messageId": UUID, "agentId": "my_agent_abc123_agent", "statusCallback": "https://example.com/rbm/status"})
    return json.dumps(m, ensure_ascii=False)

VALIDATE_EXTRAS = [
    '{"phoneNumber":"+12223334444","statusCallback":"http://127.0.0.1:8080/cb","contentMessage":{"text":"Hi"}}',
    '{"phoneNumber":"+12223334444","statusCallback":"http://[::1]/cb","contentMessage":{"text":"Hi"}}',
    '{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi","suggestions":"x"}}',
    '{"phoneNumber":"+12223334444","contentMessage":{"richCard":{"carouselCard":{"cardContents":[{"title":"a"}]}}}}',
    '{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"ttl":"60s","expireTime":"2026-11-25T10:00:00Z"}',
    '{"phoneNumber":"12223334444","contentMessage":{"text":"Hi"}}',
    '{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"n":1e999}',
    '{"eventType":"READ","messageId":"MxBZLCVr3ZRzGqkGiQUP1yHQ"}',
    '{"eventType":"IS_TYPING"}',
    '{"eventType":"SUBSCRIBE"}',
    '[]', '{', '2026-11-25T10:00:00.123456789+23:59', '1.5s', '-0.000000001s', '315576000000s',
]

KEY_PEM = "-----BEGIN PRIVATE KEY-----\nAAECAwQF\nBgcICQ==\n-----END PRIVATE KEY-----\n"
SERVICE_KEYS = [
    json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "kid-123", "private_key": KEY_PEM,
                "client_email": "rbm@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}),
    json.dumps({"type": "service_account", "project_id": "my-project", "private_key_id": "0123456789abcdef0123456789abcdef01234567",
                "private_key": "-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(bytes(range(256)) * 4).decode() + "-----END PRIVATE KEY-----\n",
                "client_email": "rbm-agent@my-project.iam.gserviceaccount.com", "client_id": "123456789012345678901",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/rbm-agent%40my-project.iam.gserviceaccount.com",
                "universe_domain": "googleapis.com"}, indent=2),
    r'{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\\nAAEC\\n-----END PRIVATE KEY-----\\n"}',
    r'{"client_email":"a","private_key":"-----BEGIN RSA PRIVATE KEY-----\nAAEC\n-----END RSA PRIVATE KEY-----"}',
    r'{"client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"}',
    '{"client_email":"a","private_key":"k","token_uri":"file:///x"}',
    '{"client_email":"","private_key":"x"}',
    '{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}',
    # regression: usable_until_ms overflowed (tests/proptest_findings.rs)
    '{"access_token":"ya29.x","expires_in":18446744073709551615}',
    'nope',
]

TOKEN_KEY = b"test-signing-key-0123456789abcdef"
def forge(header, claims):
    si = b64url(header.encode()) + "." + b64url(claims.encode())
    return si + "." + b64url(hmac.new(TOKEN_KEY, si.encode(), hashlib.sha256).digest())

WORKED_CLAIMS = '{"iat":1767225600,"exp":1767226500,"jti":"tok_01HZX3K9Q7","scope":"messages:send messages:read","phone_numbers":["+14155550123"],"max_sends":10}'
HS = '{"alg":"HS256","typ":"JWT"}'
CLAIMS = [
    WORKED_CLAIMS,
    '{"iat":1767225600,"exp":1767229200,"jti":"t1","scope":"capabilities:read"}',
    '{"scope":"events:send","sub":"biz-42","aud":"rbm-edge","jti":"abc-DEF_123","exp":1767226000,"iat":1767225600}',
    '{"iat":1767225600,"exp":1767226500,"nbf":1767225660,"jti":"j","scope":" messages:read  messages:read events:send","aud":["other","rbm-edge"],"max_sends":0}',
    '{"iat":1767225600,"exp":1767226500,"jti":"j","scope":"messages:send","phone_numbers":["+14155550123",null]}',
]
TOKENS = [
    "0" + forge(HS, WORKED_CLAIMS),
    "0" + forge('{"alg":"HS256"}', CLAIMS[2]),
    "0" + b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(WORKED_CLAIMS.encode()) + ".",
    "0..",
    *["1" + h + "\n" + c for h in [HS, '{"typ":"at+jwt","alg":"HS256","kid":"k1"}'] for c in CLAIMS],
    "1" + '{"alg":"HS256","crit":["b64"],"b64":false}' + "\n" + WORKED_CLAIMS,
    '2{"scopes":["messages:send","messages:read","messages:send"],"phoneNumbers":["+14155550123"],"ttlSeconds":600,"maxSends":3}',
    '2{"scopes":["capabilities:read"]}',
    '2{"scopes":["events:send"],"ttlSeconds":3600}',
    '2{"scopes":["messages:send"],"typo":1}',
    # regression: a mint request whose token verify() refused as too long (proptest_findings.rs)
    '2{"scopes":["messages:send"],"phoneNumbers":[%s]}' % ",".join('"+1415555%04d"' % i for i in range(200)),
]

T = "2018-12-31T15:01:23"
STATUS = [
    "0344\n0|%sZ|%s.000Z|a||+12223334444|agent\n3|%s.000000001Z|%s.100Z|w|E1|+12223334444|AGENT_ID\n4|%s.5Z|%s.500Z|w|E2|+12223334444" % ((T,) * 6),
    "05\n0|%sZ|%sZ|a\n5|%s.045123456Z|%s.200Z|w|EVENT_ID|+12223334444|AGENT_ID" % ((T,) * 4),
    "0653\n6|%s+01:00|%sZ|w|E|+1\n3|%s-01:00|%sZ|w\n0|bogus|%sZ|a|||agent" % ((T,) * 5),
    "1\n1|%sZ|%sZ|a|||agent|404" % (T, T),
    "2\n2|%sZ|%sZ|a\n3|%sZ|%sZ|w" % ((T,) * 4),
    "0123456\n" + "\n".join("%d|%s.%dZ|%s.%dZ" % (i, T, i, T, 6 - i) for i in range(7)),
    # regression: bounded() metadata over KV's 1024 bytes once escaped (proptest_findings.rs)
    "3\n3|%sZ|%sZ|w|%s|%s|%s" % (T, T, "\0" * 200, '"' * 200, "\\" * 200),
]

DICTS = {
    "webhook": ["message", "data", "messageId", "message_id", "publishTime", "publish_time", "attributes", "subscription", "clientToken", "secret"],
    "event": ["agentId", "senderPhoneNumber", "phoneNumber", "messageId", "eventId", "sendTime", "eventType", "text", "suggestionResponse",
              "location", "userFile", "latitude", "longitude", "thumbnail", "payload", "mimeType", "fileSizeBytes", "fileUri", "fileName",
              "postbackData", "type", "REPLY", "DELIVERED", "READ", "IS_TYPING", "SUBSCRIBE", "UNSUBSCRIBE", "TTL_EXPIRATION_REVOKED",
              "TTL_EXPIRATION_REVOKE_FAILED", "2018-12-31T15:01:23.045123456Z", "+12223334444", "\\ud800", "\\u0000", "1e999", "null"],
    "validate": ["contentMessage", "suggestions", "reply", "action", "text", "postbackData", "richCard", "standaloneCard", "carouselCard",
                 "cardContent", "cardContents", "cardWidth", "SMALL", "MEDIUM", "TALL", "SHORT", "title", "description", "media", "height",
                 "contentInfo", "fileUrl", "thumbnailUrl", "forceRefresh", "uploadedRbmFile", "fileName", "thumbnailName", "dialAction",
                 "phoneNumber", "openUrlAction", "url", "viewLocationAction", "latLong", "label", "query", "createCalendarEventAction",
                 "startTime", "endTime", "composeAction", "composeTextMessage", "composeRecordingMessage", "shareLocationAction",
                 "fallbackUrl", "messageTrafficType", "TRANSACTION", "PROMOTION", "ttl", "expireTime", "messageId", "agentId",
                 "statusCallback", "eventType", "READ", "IS_TYPING", "https://", "http://", "http://127.0.0.1", "[::1]", "localhost",
                 "+12223334444", UUID, "2026-11-25T10:00:00Z", "+05:30", "3600s", "1296000s", ".000000001", "null", "true", "false"],
    "service_key": ["client_email", "private_key", "private_key_id", "token_uri", "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----",
                    "\\\\n", "https://", "http://", "access_token", "expires_in", "null"],
    "token": ["alg", "HS256", "typ", "JWT", "crit", "iat", "exp", "nbf", "jti", "scope", "messages:send", "messages:read", "events:send",
              "capabilities:read", "phone_numbers", "max_sends", "aud", "rbm-edge", "scopes", "phoneNumbers", "ttlSeconds", "maxSends",
              "1767225600", "1767226500", "+14155550123", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"],
    "status": ["2018-12-31T15:01:23", ".045123456", "Z", "+01:00", "|a|", "|w|", "+12223334444",
               "\0" * 16, '"' * 16, "\\" * 16],
}
DICTS["webhook"] += DICTS["event"]

def dict_line(word):
    out = ""
    for ch in word.encode():
        if ch in (0x22, 0x5c):
            out += "\\" + chr(ch)
        elif 0x20 <= ch < 0x7f:
            out += chr(ch)
        else:
            out += "\\x%02X" % ch
    return '"%s"' % out

def write(target, items):
    d = os.path.join(HERE, "seeds", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for i, item in enumerate(items):
        data = item if isinstance(item, bytes) else item.encode()
        name = "%02d-%s" % (i, hashlib.sha1(data).hexdigest()[:12])
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

write("event", EVENTS)
write("webhook", [envelope(e, i) for i, e in enumerate(EVENTS)] + ENVELOPE_EXTRAS + EVENTS[:6] + [KV_META_EVENT])
write("validate", [with_ours(m, i % 2 == 1) for i, m in enumerate(MESSAGES)] + VALIDATE_EXTRAS)
write("service_key", SERVICE_KEYS)
write("token", TOKENS)
write("status", STATUS)
os.makedirs(os.path.join(HERE, "dicts"), exist_ok=True)
for target, words in DICTS.items():
    with open(os.path.join(HERE, "dicts", target + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for the %s target (written by fuzz/make_seeds.py)\n" % target)
        for w in dict.fromkeys(words):
            f.write(dict_line(w) + "\n")
print({t: len(os.listdir(os.path.join(HERE, "seeds", t))) for t in sorted(os.listdir(os.path.join(HERE, "seeds")))})
