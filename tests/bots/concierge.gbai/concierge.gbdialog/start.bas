' Hands the conversation to a person when asked (the human handoff tests' bot), and goes on
' where it waited once the person releases it.
TALK "Hello! I am the concierge. Say human to talk to a person."
HEAR request
DO WHILE LCASE(request) <> "human"
    TALK "You said: " + request
    HEAR request
LOOP
result = TRANSFER TO HUMAN "support", "high", "asked for a person"
IF result.success THEN
    TALK "A person will be with you shortly. You are number " + result.queue_position + " in line."
ELSE
    TALK result.message
END IF
HEAR after
TALK "Welcome back! You said: " + after
