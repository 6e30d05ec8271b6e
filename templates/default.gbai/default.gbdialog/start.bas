' The bundled default bot: greets, learns the user's name and remembers it; "ask" hands the
' conversation to its knowledge base (default.gbkb) and, once one is configured, its model.
TALK "Hello! I am the ${company} assistant. What is your name?"
HEAR name AS NAME
TALK "Nice to meet you, ${name}!"

choice = ""
DO WHILE choice <> "bye"
    CLEAR SUGGESTIONS
    ADD SUGGESTION "help" AS "What can you do?"
    ADD SUGGESTION "name" AS "Do you remember my name?"
    ADD SUGGESTION "bye" AS "Goodbye"
    ADD SUGGESTION "ask" AS "Ask about botserver"
    TALK "What would you like to do next?"
    HEAR choice AS "help", "name", "bye", "ask"
    CLEAR SUGGESTIONS

    SELECT CASE choice
        CASE "help"
            BEGIN TALK
I am a dialog written in BASIC, running on **botserver**.
Edit `templates/default.gbai/default.gbdialog/start.bas` to change what I say.
            END TALK
        CASE "name"
            TALK "Of course: your name is ${name}."
        CASE "bye"
            TALK "Goodbye, " + name + "! Come back any time."
        CASE "ask"
            TALK "Ask me anything about botserver: channels, language models, BASIC dialogs, the knowledge base."
            EXIT
    END SELECT
LOOP
