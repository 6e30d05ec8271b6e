' The bundled default bot: greets, learns the user's name and remembers it.
TALK "Hello! I am the ${company} assistant. What is your name?"
HEAR name AS NAME
TALK "Nice to meet you, ${name}!"

choice = ""
DO WHILE choice <> "bye"
    CLEAR SUGGESTIONS
    ADD SUGGESTION "help" AS "What can you do?"
    ADD SUGGESTION "name" AS "Do you remember my name?"
    ADD SUGGESTION "bye" AS "Goodbye"
    TALK "What would you like to do next?"
    HEAR choice AS "help", "name", "bye"
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
    END SELECT
LOOP
