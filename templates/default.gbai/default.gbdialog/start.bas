' The bundled default bot: greets, learns the user's name and remembers it.
TALK "Hello! I am the ${company} assistant. What is your name?"
HEAR name AS NAME
TALK "Nice to meet you, ${name}!"

CLEAR SUGGESTIONS
ADD SUGGESTION "help" AS "What can you do?"
ADD SUGGESTION "name" AS "Do you remember my name?"
ADD SUGGESTION "bye" AS "Goodbye"
TALK "What would you like to do next?"
HEAR choice AS "help", "name", "bye"

CLEAR SUGGESTIONS
IF choice = "help" THEN
    BEGIN TALK
I am a dialog written in BASIC, running on **botserver**.
Edit `templates/default.gbai/default.gbdialog/start.bas` to change what I say.
    END TALK
ELSEIF choice = "name" THEN
    TALK "Of course: your name is ${name}."
ELSE
    TALK "Goodbye, " + name + "! Come back any time."
END IF
