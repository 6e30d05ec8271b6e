DESCRIPTION "Ask the user to confirm (a tool cannot wait for an answer)"
TALK "Are you sure?"
HEAR answer AS BOOLEAN
RETURN answer
