PARAM name AS STRING LIKE "Ana" DESCRIPTION "Who the table is for"
PARAM people AS INTEGER LIKE 4 DESCRIPTION "How many people"

DESCRIPTION "Book a table at the restaurant, once the guest confirms"

TALK "A table for " + people + ", in the name of " + name + ". Shall I book it?"
HEAR confirmed AS BOOLEAN

IF confirmed THEN
    booking = "BK-" + name + "-" + people
    SAVE "bookings.csv", booking, name, people
    TALK "Booked: " + booking
    RETURN booking
END IF

TALK "Not booked."
RETURN "cancelled"
